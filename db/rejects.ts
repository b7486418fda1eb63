import type pg from 'pg';
import { redact } from '../lib/redact';
import { isUuid } from './read';

/**
 * Rejected rows (SPEC §10): a step's count (`etl_run_steps.rows_rejected`) and up to
 * MAX_SAMPLES samples (`etl_step_rejects`). What must stay true:
 * - Idempotent: samples are keyed by (run, step, dataset, row) and inserted with ON
 *   CONFLICT DO NOTHING, and the count is written as the step's absolute total, never
 *   incremented; so validating a page again after a crash, a retry or a resume neither
 *   duplicates a sample nor counts a row twice.
 * - Samples never describe rows a later attempt will validate again under other rules:
 *   a step clears the samples past its checkpoint when it starts (clearRejects).
 */

type Q = Pick<pg.Pool, 'query'>;

export const MAX_SAMPLES = 100;
export const MAX_VALUE_CHARS = 2048;

export interface RejectSample {
  dataset: string;
  /** 1-based position in the dataset's source order. */
  row: number;
  page?: number;
  reason: string;
  path?: string;
  value: string;
}

export interface RejectView {
  dataset: string;
  row: number;
  page?: number;
  reason: string;
  path?: string;
  value: string;
}

/** Drops the samples a new attempt will produce again: all of them, or those of pages
 *  from `fromPage` (1-based) on, when the step resumes from a page checkpoint. */
export async function clearRejects(q: Q, a: { runId: string; stepKey: string; fromPage?: number; from?: { dataset: string; row: number } }): Promise<void> {
  if (a.from) {
    // A streaming transform continuing a dataset after row `row`: its later samples come again.
    await q.query('delete from etl_step_rejects where run_id = $1 and step_key = $2 and dataset = $3 and row > $4',
      [a.runId, a.stepKey, a.from.dataset, a.from.row]);
  } else if (a.fromPage === undefined) {
    await q.query('delete from etl_step_rejects where run_id = $1 and step_key = $2', [a.runId, a.stepKey]);
  } else {
    await q.query('delete from etl_step_rejects where run_id = $1 and step_key = $2 and (page is null or page >= $3)',
      [a.runId, a.stepKey, a.fromPage]);
  }
}

/**
 * Records the step's total of rejected rows and new samples, in one statement. Samples
 * beyond MAX_SAMPLES for the step are not kept (the earlier ones, in source order, are).
 */
export async function recordRejects(q: Q, a: { runId: string; stepKey: string; total: number; samples: readonly RejectSample[] }): Promise<void> {
  const samples = a.samples.slice(0, MAX_SAMPLES).map((s) => ({
    dataset: s.dataset, row: s.row, page: s.page ?? null, reason: redact(s.reason, { max: 1000 }),
    path: s.path ?? null, value: redact(s.value, { max: MAX_VALUE_CHARS }),
  }));
  await q.query({
    name: 'etl-record-rejects',
    text: `with have as (select count(*)::int as n from etl_step_rejects where run_id = $1 and step_key = $2),
     ins as (
       insert into etl_step_rejects (run_id, step_key, dataset, row, page, reason, path, value)
       select $1, $2, t.dataset, t.row, t.page, t.reason, t.path, t.value
       from jsonb_to_recordset($4::jsonb) as t(dataset text, row int, page int, reason text, path text, value text)
       order by t.dataset, t.row
       limit greatest(0, ${MAX_SAMPLES} - (select n from have))
       on conflict do nothing)
     update etl_run_steps set rows_rejected = $3, updated_at = now() where run_id = $1 and key = $2`,
    values: [a.runId, a.stepKey, a.total, JSON.stringify(samples)],
  });
}

/** The step's count and samples in source order; null when the run has no such step. */
export async function listRejects(q: Q, runId: string, stepKey: string): Promise<{ rowsRejected: number; rejects: RejectView[] } | null> {
  if (!isUuid(runId)) return null;
  const { rows } = await q.query<{ rows_rejected: number | null; rejects: (Omit<RejectView, 'page' | 'path'> & { page: number | null; path: string | null })[] }>(
    `select s.rows_rejected,
       coalesce((select json_agg(json_build_object('dataset', r.dataset, 'row', r.row, 'page', r.page, 'reason', r.reason,
         'path', r.path, 'value', r.value) order by r.created_at, r.dataset, r.row)
         from etl_step_rejects r where r.run_id = s.run_id and r.step_key = s.key), '[]'::json) as rejects
     from etl_run_steps s where s.run_id = $1 and s.key = $2`,
    [runId, stepKey],
  );
  const row = rows[0];
  if (!row) return null;
  const rejects = row.rejects.map((r) => ({
    dataset: r.dataset, row: r.row, ...(r.page != null ? { page: r.page } : {}), reason: redact(r.reason),
    ...(r.path != null ? { path: r.path } : {}), value: redact(r.value, { max: MAX_VALUE_CHARS }),
  }));
  return { rowsRejected: row.rows_rejected ?? 0, rejects };
}

/** The reason of the first stored sample (by dataset order given, then row), for a step
 *  that continues after rows it rejected in an earlier attempt. */
export async function firstRejectReason(q: Q, runId: string, stepKey: string, datasets: readonly string[]): Promise<string | undefined> {
  const { rows } = await q.query<{ reason: string }>(
    `select reason from etl_step_rejects where run_id = $1 and step_key = $2
     order by array_position($3::text[], dataset), row limit 1`, [runId, stepKey, datasets]);
  return rows[0]?.reason;
}
