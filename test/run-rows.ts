import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import * as runs from '../db/runs';

/** Fixtures for the db/ state-transition tests: insert a run, read its rows back as stored. */

export const seed = (id: string) => ({ id, workflow: 'demo', description: id, cron: '* * * * *', timezone: 'UTC', config: { c: id } });

export const KEYS = ['fetch', 'transform', 'write'] as const;

/** A queued run of `pipelineId` with the three steps pending (or as given). */
export async function newRun(pool: pg.Pool, pipelineId: string, o: Partial<runs.NewRun> = {}): Promise<string> {
  const id = o.id ?? randomUUID();
  await runs.insertRun(pool, {
    id, pipelineId, trigger: 'manual', params: { p: 1 }, exclusive: false,
    steps: KEYS.map((key, position) => ({ key, position, status: 'pending' as const })),
    ...o,
  });
  return id;
}

export async function runRow(pool: pg.Pool, runId: string) {
  const { rows } = await pool.query(
    'select status, generation, error, rows, started_at, finished_at, updated_at from etl_runs where id = $1', [runId]);
  return rows[0];
}

export async function stepRow(pool: pg.Pool, runId: string, key: string) {
  const { rows } = await pool.query(
    `select status, attempts, output, checkpoint, job_id, handoff, error, rows_in, rows_out, finished_at
     from etl_run_steps where run_id = $1 and key = $2`, [runId, key]);
  return rows[0];
}

/** Every step's status, in position order. */
export async function stepStatuses(pool: pg.Pool, runId: string): Promise<string[]> {
  const { rows } = await pool.query('select status from etl_run_steps where run_id = $1 order by position', [runId]);
  return rows.map((r) => r.status);
}

/** The attempt history of one step: [attempt, status, worker] in order. */
export async function attempts(pool: pg.Pool, runId: string, key: string): Promise<[number, string, string | null][]> {
  const { rows } = await pool.query(
    'select attempt, status, worker from etl_step_attempts where run_id = $1 and step_key = $2 order by attempt', [runId, key]);
  return rows.map((r) => [r.attempt, r.status, r.worker]);
}
