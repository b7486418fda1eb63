import type pg from 'pg';
import { redact } from '../lib/redact';
import type { Actor, RunStatus, StepStatus, Trigger } from './schema';

/**
 * Read-side queries for the HTTP API, returning the API's camelCase shapes with ISO
 * timestamps. Each read is one statement, so a run and its steps come from one snapshot.
 * Text that may hold a step's error is redacted again on the way out: a secret registered
 * after the error was stored would otherwise still be served.
 */

type Q = Pick<pg.Pool, 'query'>;

export interface AttemptView { attempt: number; status: string; startedAt: string | null; finishedAt: string | null; error: string | null }
export interface StepView {
  key: string; position: number; status: StepStatus; attempts: number; startedAt: string | null; finishedAt: string | null;
  rowsIn: number | null; rowsOut: number | null; rowsRejected: number; error: string | null; checkpoint: unknown; attemptsHistory: AttemptView[];
}
export interface StepDetailView extends StepView { errorStack: string | null; output: unknown; jobId: string | null }
export interface RunView {
  id: string; pipelineId: string; status: RunStatus; trigger: Trigger; createdAt: string; startedAt: string | null;
  finishedAt: string | null; error: string | null; parentRunId: string | null; scheduledFor: string | null;
  params: Record<string, unknown>; rows: { in?: number | null; out?: number | null } | null;
  triggeredBy: Actor | null;
}
export interface RunDetailView extends RunView { steps: StepView[] }
export interface PipelineView {
  id: string; description: string; workflow: string; cron: string; timezone: string; enabled: boolean;
  concurrency: string; catchup: string; catchupCap: number; config: Record<string, unknown>;
  createdAt: string; updatedAt: string; lastRun: RunView | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string) => UUID.test(s);

/** Same format as Date#toISOString, independent of the session's TimeZone. */
const iso = (col: string) => `to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

const runJson = (r: string) => `json_build_object(
  'id', ${r}.id, 'pipelineId', ${r}.pipeline_id, 'status', ${r}.status, 'trigger', ${r}.trigger,
  'createdAt', ${iso(`${r}.created_at`)}, 'startedAt', ${iso(`${r}.started_at`)}, 'finishedAt', ${iso(`${r}.finished_at`)},
  'error', ${r}.error, 'parentRunId', ${r}.parent_run_id, 'scheduledFor', ${iso(`${r}.scheduled_for`)},
  'params', ${r}.params, 'rows', ${r}.rows, 'triggeredBy', ${r}.triggered_by)`;

const attemptsJson = (s: string) => `coalesce((
  select json_agg(json_build_object('attempt', a.attempt, 'status', a.status, 'startedAt', ${iso('a.started_at')},
    'finishedAt', ${iso('a.finished_at')}, 'error', a.error) order by a.attempt)
  from etl_step_attempts a where a.run_id = ${s}.run_id and a.step_key = ${s}.key), '[]'::json)`;

const stepJson = (s: string) => `json_build_object(
  'key', ${s}.key, 'position', ${s}.position, 'status', ${s}.status, 'attempts', ${s}.attempts,
  'startedAt', ${iso(`${s}.started_at`)}, 'finishedAt', ${iso(`${s}.finished_at`)}, 'rowsIn', ${s}.rows_in,
  'rowsOut', ${s}.rows_out, 'rowsRejected', coalesce(${s}.rows_rejected, 0), 'error', ${s}.error, 'checkpoint', ${s}.checkpoint, 'attemptsHistory', ${attemptsJson(s)})`;

/**
 * Newest first, spelled as etl_runs_pipeline_created_idx is built (drizzle's `desc()` is
 * DESC NULLS LAST; a bare DESC means NULLS FIRST and cannot use it). Both columns are NOT
 * NULL, so the order is the same; with the index, "latest run" reads one row instead of
 * sorting the pipeline's whole history.
 */
const newestFirst = (r: string) => `${r}.created_at desc nulls last, ${r}.id desc nulls last`;

// The JSON is built outside the LIMIT, so it is built once whatever plan is chosen.
const PIPELINE_COLS = `p.id, p.description, p.workflow, p.cron, p.timezone, p.enabled, p.concurrency, p.catchup,
  p.catchup_cap as "catchupCap", p.config, ${iso('p.created_at')} as "createdAt", ${iso('p.updated_at')} as "updatedAt",
  (select ${runJson('r')} from (select * from etl_runs l where l.pipeline_id = p.id order by ${newestFirst('l')} limit 1) r) as "lastRun"`;

const clean = (s: string | null) => (s === null ? null : redact(s));
const cleanRun = <R extends RunView>(r: R): R => ({ ...r, error: clean(r.error) });
const cleanStep = <S extends StepView>(s: S): S => ({
  ...s, error: clean(s.error), attemptsHistory: s.attemptsHistory.map((a) => ({ ...a, error: clean(a.error) })),
});
const toPipeline = (row: PipelineView): PipelineView => ({ ...row, lastRun: row.lastRun ? cleanRun(row.lastRun) : null });

export async function listPipelinesWithLastRun(q: Q): Promise<PipelineView[]> {
  const { rows } = await q.query<PipelineView>(`select ${PIPELINE_COLS} from etl_pipelines p order by p.id`);
  return rows.map(toPipeline);
}

export async function getPipelineWithLastRun(q: Q, id: string): Promise<PipelineView | null> {
  const { rows } = await q.query<PipelineView>(`select ${PIPELINE_COLS} from etl_pipelines p where p.id = $1`, [id]);
  return rows[0] ? toPipeline(rows[0]) : null;
}

export interface RunsPage { runs: RunView[]; nextCursor: string | null }
export interface ListRunsOptions { limit?: number; cursor?: string | null; status?: RunStatus | null }

/** Keyset cursor: the last row's created_at (microseconds, UTC) and id, base64url-encoded. */
export function encodeCursor(createdAtUs: string, id: string): string {
  return Buffer.from(`${createdAtUs}|${id}`, 'utf8').toString('base64url');
}

const CURSOR = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})\|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** Null when the cursor was not made by encodeCursor (the API answers 400). */
export function decodeCursor(cursor: string): { createdAt: string; id: string } | null {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) return null;
  const m = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) return null;
  // The shape alone admits month 13 or hour 99, which Postgres refuses with an error:
  // only a real calendar time (the millisecond prefix round-trips) is a cursor.
  const ms = `${m[1].slice(0, 23)}Z`;
  const t = Date.parse(ms);
  if (Number.isNaN(t) || new Date(t).toISOString() !== ms || t < Date.UTC(1970, 0, 1)) return null;
  return { createdAt: `${m[1]}Z`, id: m[2] };
}

/** Runs of one pipeline, newest first. Throws on a cursor decodeCursor rejects. */
export async function listRuns(q: Q, pipelineId: string, opts: ListRunsOptions = {}): Promise<RunsPage> {
  const limit = Math.min(100, Math.max(1, Math.trunc(opts.limit ?? 20)));
  const params: unknown[] = [pipelineId];
  const where = ['r.pipeline_id = $1'];
  if (opts.status) {
    params.push(opts.status);
    where.push(`r.status = $${params.length}`);
  }
  if (opts.cursor) {
    const c = decodeCursor(opts.cursor);
    if (!c) throw new Error('invalid cursor');
    params.push(c.createdAt, c.id);
    where.push(`(r.created_at, r.id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`);
  }
  params.push(limit + 1);
  const { rows } = await q.query<{ run: RunView; at: string }>(
    `select ${runJson('r')} as run, to_char(r.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as at
     from etl_runs r where ${where.join(' and ')}
     order by ${newestFirst('r')} limit $${params.length}`,
    params,
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    runs: page.map((r) => cleanRun(r.run)),
    nextCursor: rows.length > limit && last ? encodeCursor(last.at, last.run.id) : null,
  };
}

/** The drilldown: the run, its steps in order, and every attempt of each step. */
export async function getRunDetail(q: Q, runId: string): Promise<RunDetailView | null> {
  if (!isUuid(runId)) return null;
  const { rows } = await q.query<{ run: RunView; steps: StepView[] }>(
    `select ${runJson('r')} as run,
       coalesce((select json_agg(${stepJson('s')} order by s.position) from etl_run_steps s where s.run_id = r.id), '[]'::json) as steps
     from etl_runs r where r.id = $1`,
    [runId],
  );
  if (!rows[0]) return null;
  return { ...cleanRun(rows[0].run), steps: rows[0].steps.map(cleanStep) };
}

/** Outputs above this size are summarised: they are references or staged values, not for a browser. */
const MAX_OUTPUT_BYTES = 64 * 1024;

export async function getStepDetail(q: Q, runId: string, key: string): Promise<StepDetailView | null> {
  if (!isUuid(runId)) return null;
  const { rows } = await q.query<{ step: StepView; error_stack: string | null; job_id: string | null; output: unknown }>(
    `select ${stepJson('s')} as step, s.error_stack, s.job_id,
       case when octet_length(s.output::text) > ${MAX_OUTPUT_BYTES}
         then jsonb_build_object('truncated', true, 'bytes', octet_length(s.output::text)) else s.output end as output
     from etl_run_steps s where s.run_id = $1 and s.key = $2`,
    [runId, key],
  );
  const row = rows[0];
  if (!row) return null;
  return { ...cleanStep(row.step), errorStack: clean(row.error_stack), output: row.output, jobId: row.job_id };
}

/** Counts for /metrics: runs by pipeline and status, steps by status. */
export async function statusCounts(q: Q): Promise<{
  runs: { pipelineId: string; status: string; n: number }[];
  steps: { status: string; n: number }[];
}> {
  const [runs, steps] = await Promise.all([
    q.query<{ pipelineId: string; status: string; n: number }>('select pipeline_id as "pipelineId", status, count(*)::int as n from etl_runs group by 1, 2'),
    q.query<{ status: string; n: number }>('select status, count(*)::int as n from etl_run_steps group by 1'),
  ]);
  return { runs: runs.rows, steps: steps.rows };
}

/** Readiness probe. */
export async function ping(q: Q): Promise<void> {
  await q.query('select 1');
}
