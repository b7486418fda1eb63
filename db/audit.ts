import type pg from 'pg';
import type { Actor } from './schema';

type Q = Pick<pg.Pool, 'query'>;

/**
 * The audit trail's SQL (SPEC §7). Rows are only ever inserted; the page and scripts page
 * through them newest first by id (a bigserial), so the cursor is just the last id seen.
 */

export interface AuditEntry {
  actor: Actor;
  /** e.g. pipeline.trigger, pipeline.enable, pipeline.cron, run.retry, run.resume, run.rerun, run.cancel */
  action: string;
  pipelineId?: string | null;
  runId?: string | null;
  details?: Record<string, unknown> | null;
}

export interface AuditView {
  id: number;
  at: string;
  actor: Actor;
  action: string;
  pipelineId: string | null;
  runId: string | null;
  details: Record<string, unknown> | null;
}

/** Records entries; a run's pipeline is filled in from etl_runs when not given. */
export async function recordAudit(q: Q, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await q.query(
    `insert into etl_audit_log (actor, action, pipeline_id, run_id, details)
     select e.actor, e.action, coalesce(e.pipeline_id, r.pipeline_id), e.run_id, e.details
     from jsonb_to_recordset($1::jsonb) as e(actor jsonb, action text, pipeline_id text, run_id uuid, details jsonb)
     left join etl_runs r on r.id = e.run_id`,
    [JSON.stringify(entries.map((e) => ({
      actor: e.actor, action: e.action, pipeline_id: e.pipelineId ?? null, run_id: e.runId ?? null, details: e.details ?? null,
    })))],
  );
}

/** Newest first; `beforeId` is the last id of the previous page. */
/** A listAudit row as pg returns it: the bigserial id is a string unless db/client's int8 parser is installed. */
type AuditRow = Omit<AuditView, 'id'> & { id: number | string };

export async function listAudit(q: Q, o: { limit: number; beforeId?: number }): Promise<{ entries: AuditView[]; nextCursor: string | null }> {
  const { rows } = await q.query<AuditRow>(
    `select id, to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at, actor, action,
       pipeline_id as "pipelineId", run_id as "runId", details
     from etl_audit_log where ($2::bigint is null or id < $2) order by id desc limit $1`,
    [o.limit + 1, o.beforeId ?? null],
  );
  const page = rows.slice(0, o.limit).map((r) => ({ ...r, id: Number(r.id) }));
  const more = rows.length > o.limit;
  return { entries: page, nextCursor: more ? encodeAuditCursor(page[page.length - 1].id) : null };
}

export const encodeAuditCursor = (id: number) => Buffer.from(`a:${id}`).toString('base64url');

/** The id a cursor names, or null when it is not one listAudit returned. */
export function decodeAuditCursor(cursor: string): number | null {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(cursor)) return null;
  const m = /^a:([1-9]\d{0,17})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) return null;
  const id = Number(m[1]);
  // bigint's range is wider than a double's exact integers; ids never get near either.
  return Number.isSafeInteger(id) ? id : null;
}
