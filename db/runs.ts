import type pg from 'pg';
import { RUN_RECOVERED_ALERT_CTES } from './alerts';
import type { Actor, RunStatus, StepStatus, Trigger } from './schema';

/**
 * Run-level state: inserting runs, the run's own transitions (finish, cancel, requeue)
 * and the reads the engine and reconciler make. Each transition is one guarded statement
 * (CTEs), so it is atomic and idempotent: its WHERE names the status (and, where a flow
 * acts, the generation) it may move from, and a call that lost a race changes nothing.
 * Step-level transitions (claim, complete, fail, …) are in ./steps.ts.
 */

type Q = Pick<pg.Pool, 'query'>;

export interface NewStepRow {
  key: string;
  position: number;
  status: StepStatus;
  output?: unknown;
  rowsIn?: number | null;
  rowsOut?: number | null;
  attempts?: number;
  startedAt?: Date | null;
  finishedAt?: Date | null;
}

export interface NewRun {
  id: string;
  pipelineId: string;
  trigger: Trigger;
  params: Record<string, unknown>;
  scheduledFor?: Date | null;
  parentRunId?: string | null;
  exclusive: boolean;
  steps: NewStepRow[];
  /** Who created the run (SPEC §7 `triggeredBy`). */
  triggeredBy?: Actor | null;
}

export async function insertRun(q: Q, run: NewRun): Promise<void> {
  await q.query({
    name: 'etl-insert-run',
    text: `with r as (
       insert into etl_runs (id, pipeline_id, status, trigger, scheduled_for, params, parent_run_id, exclusive, triggered_by)
       values ($1, $2, 'queued', $3, $4, $5, $6, $7, $9) returning id)
     insert into etl_run_steps (run_id, key, position, status, output, rows_in, rows_out, attempts, started_at, finished_at)
     select r.id, s.key, s.position, s.status, s.output, s.rows_in, s.rows_out, coalesce(s.attempts, 0), s.started_at, s.finished_at
     from r, jsonb_to_recordset($8::jsonb) as s(key text, position int, status text, output jsonb, rows_in int, rows_out int,
                                               attempts int, started_at timestamptz, finished_at timestamptz)`,
    values: [
      run.id, run.pipelineId, run.trigger, run.scheduledFor ?? null, run.params, run.parentRunId ?? null, run.exclusive,
      JSON.stringify(run.steps.map((s) => ({
        key: s.key, position: s.position, status: s.status, output: s.output ?? null, rows_in: s.rowsIn ?? null,
        rows_out: s.rowsOut ?? null, attempts: s.attempts ?? 0, started_at: s.startedAt ?? null, finished_at: s.finishedAt ?? null,
      }))),
      run.triggeredBy ?? null,
    ],
  });
}

/** Inserts many runs in one statement. A run that would break a unique rule (an active
 *  run of an exclusive pipeline, a tick that already has its run) is left out; the ids
 *  of the runs inserted are returned. */
export async function insertRuns(q: Q, list: NewRun[]): Promise<Set<string>> {
  if (list.length === 0) return new Set();
  const { rows } = await q.query<{ id: string }>(
    `with input as (
       select * from jsonb_to_recordset($1::jsonb) as r(id uuid, pipeline_id text, trigger text, scheduled_for timestamptz,
                                                       params jsonb, parent_run_id uuid, exclusive boolean, steps jsonb,
                                                       triggered_by jsonb)),
     ins as (
       insert into etl_runs (id, pipeline_id, status, trigger, scheduled_for, params, parent_run_id, exclusive, triggered_by)
       select id, pipeline_id, 'queued', trigger, scheduled_for, coalesce(params, '{}'::jsonb), parent_run_id, exclusive, triggered_by
       from input
       on conflict do nothing returning id),
     st as (
       insert into etl_run_steps (run_id, key, position, status)
       select i.id, s.key, s.position, s.status
       from ins join input i using (id), jsonb_to_recordset(i.steps) as s(key text, position int, status text))
     select id from ins`,
    [JSON.stringify(list.map((r) => ({
      id: r.id, pipeline_id: r.pipelineId, trigger: r.trigger, scheduled_for: r.scheduledFor ?? null, params: r.params,
      parent_run_id: r.parentRunId ?? null, exclusive: r.exclusive, triggered_by: r.triggeredBy ?? null,
      steps: r.steps.map((s) => ({ key: s.key, position: s.position, status: s.status })),
    })))],
  );
  return new Set(rows.map((r) => r.id));
}

/** The root job's transition: succeeded once every step has, only from queued/running and
 *  on the root job's generation (with its `run.recovered` alert, ./alerts.ts). Returns the
 *  pipeline id; null when refused. */
export async function finishRun(q: Q, a: { runId: string; generation: number }): Promise<string | null> {
  const { rows } = await q.query<{ pipeline_id: string }>({
    name: 'etl-finish-run',
    text: `with ru as (
       update etl_runs r set status = 'succeeded', finished_at = now(), updated_at = now(), error = null,
         rows = (select jsonb_build_object(
                   'in', (select rows_out from etl_run_steps where run_id = $1 order by position asc limit 1),
                   'out', (select rows_out from etl_run_steps where run_id = $1 order by position desc limit 1)))
       where id = $1 and generation = $2 and status in ('queued', 'running')
         and not exists (select 1 from etl_run_steps where run_id = $1 and status not in ('succeeded', 'skipped'))
       returning id, pipeline_id),${RUN_RECOVERED_ALERT_CTES}
     select pipeline_id from ru`,
    values: [a.runId, a.generation],
  });
  return rows[0]?.pipeline_id ?? null;
}

/** Cancels a queued/running run with its pending/running steps and running attempts.
 *  Null when the run was not active (already finished or cancelled): nothing changes. */
export async function cancelRun(q: Q, runId: string, reason: string): Promise<{ pipelineId: string; generation: number } | null> {
  const { rows } = await q.query<{ pipeline_id: string; generation: number }>(
    `with r as (
       update etl_runs set status = 'cancelled', finished_at = now(), updated_at = now(), error = $2
       where id = $1 and status in ('queued', 'running') returning pipeline_id, generation),
     s as (
       update etl_run_steps set status = 'cancelled', finished_at = coalesce(finished_at, now()), handoff = false, updated_at = now()
       where run_id = $1 and status in ('pending', 'running') and exists (select 1 from r)),
     a as (
       update etl_step_attempts set status = 'cancelled', finished_at = now()
       where run_id = $1 and status = 'running' and exists (select 1 from r))
     select pipeline_id, generation from r`,
    [runId, reason],
  );
  if (!rows[0]) return null;
  // A claim or handoff that committed while this statement waited for its step's lock
  // inserted an attempt row this statement's snapshot cannot see: a second statement
  // (a fresh snapshot) cancels it too. Nothing can start an attempt after the first.
  await q.query(
    `update etl_step_attempts set status = 'cancelled', finished_at = now()
     where run_id = $1 and status = 'running' and exists (select 1 from etl_runs where id = $1 and status = 'cancelled')`,
    [runId],
  );
  return { pipelineId: rows[0].pipeline_id, generation: rows[0].generation };
}

export interface RunState {
  id: string;
  pipelineId: string;
  status: RunStatus;
  generation: number;
  updatedAt: Date;
  steps: { key: string; position: number; status: StepStatus; attempts: number; jobId: string | null }[];
}

interface RunStateRow { id: string; pipeline_id: string; status: RunStatus; generation: number; updated_at: Date }
interface RunStateStepRow { key: string; position: number; status: StepStatus; attempts: number; job_id: string | null }

export async function getRunState(q: Q, runId: string, opts: { forUpdate?: boolean } = {}): Promise<RunState | null> {
  const { rows } = await q.query<RunStateRow>(
    `select id, pipeline_id, status, generation, updated_at from etl_runs where id = $1 ${opts.forUpdate ? 'for update' : ''}`,
    [runId],
  );
  if (!rows[0]) return null;
  const steps = await q.query<RunStateStepRow>(
    'select key, position, status, attempts, job_id from etl_run_steps where run_id = $1 order by position',
    [runId],
  );
  return {
    id: rows[0].id, pipelineId: rows[0].pipeline_id, status: rows[0].status, generation: rows[0].generation,
    updatedAt: rows[0].updated_at,
    steps: steps.rows.map((s) => ({ key: s.key, position: s.position, status: s.status, attempts: s.attempts, jobId: s.job_id })),
  };
}

/** Puts a failed/cancelled/stuck run back in the queue on a new flow generation: every
 *  step not yet succeeded becomes pending. Attempts still marked running are lost.
 *  Fenced by the generation only (so two rebuilds of one flow cannot both bump it); the
 *  caller decides from which statuses a requeue is allowed, under the run's row lock. */
export async function requeueRun(q: Q, runId: string, generation: number): Promise<number> {
  const { rows } = await q.query<{ generation: number }>(
    `with r as (
       update etl_runs set status = 'queued', generation = generation + 1, error = null, finished_at = null, updated_at = now()
       where id = $1 and generation = $2 returning generation),
     s as (
       update etl_run_steps set status = 'pending', finished_at = null, handoff = false, updated_at = now()
       where run_id = $1 and status not in ('succeeded', 'skipped') and exists (select 1 from r)),
     a as (
       update etl_step_attempts set status = 'lost', finished_at = now(), error = coalesce(error, 'flow rebuilt')
       where run_id = $1 and status = 'running' and exists (select 1 from r))
     select generation from r`,
    [runId, generation],
  );
  if (!rows[0]) throw new Error(`run ${runId} changed while being requeued`);
  return rows[0].generation;
}

/** Runs that should have BullMQ jobs: queued/running and untouched for `olderThanMs`. */
export async function listActiveRuns(q: Q, olderThanMs: number): Promise<{ id: string; generation: number; status: RunStatus }[]> {
  const { rows } = await q.query<{ id: string; generation: number; status: RunStatus }>(
    `select id, generation, status from etl_runs
     where status in ('queued', 'running') and updated_at < now() - make_interval(secs => $1::float8 / 1000)`,
    [olderThanMs],
  );
  return rows;
}

/** Which of these runs are cancelled: the workers' poll for a missed cancel broadcast. */
export async function cancelledAmong(q: Q, runIds: string[]): Promise<string[]> {
  if (runIds.length === 0) return [];
  // A failed run too: a step overlapped with the one that failed is stopped with it.
  const { rows } = await q.query<{ id: string }>(`select id from etl_runs where id = any($1::uuid[]) and status in ('cancelled', 'failed')`, [runIds]);
  return rows.map((r) => r.id);
}

export async function runParams(q: Q, runId: string): Promise<Record<string, unknown>> {
  const { rows } = await q.query<{ params: Record<string, unknown> | null }>('select params from etl_runs where id = $1', [runId]);
  return rows[0]?.params ?? {};
}

/** The newest succeeded run of the run's pipeline created after it, if any: resuming or
 *  retrying the run would publish older data over that run's (SPEC §13). */
export async function supersededBy(q: Q, runId: string): Promise<string | null> {
  const { rows } = await q.query<{ id: string }>(
    `select s.id from etl_runs r join etl_runs s on s.pipeline_id = r.pipeline_id and s.status = 'succeeded' and s.created_at > r.created_at
     where r.id = $1 order by s.created_at desc limit 1`,
    [runId],
  );
  return rows[0]?.id ?? null;
}

export interface ResumeCandidate {
  id: string;
  pipelineId: string;
  status: RunStatus;
  createdAt: Date;
  /** 1 for the newest matching run of its pipeline. */
  rank: number;
  supersededBy: string | null;
  /** The pipeline has a queued or running run now. */
  pipelineActive: boolean;
}

/** Runs a bulk resume considers (SPEC §13), newest first per pipeline. Bounded: a bulk
 *  resume acts on one run per pipeline, the rest are only reported. */
export async function resumeCandidates(q: Q, f: {
  pipelineId?: string; statuses: readonly RunStatus[]; since?: string; until?: string; limit?: number;
}): Promise<ResumeCandidate[]> {
  const { rows } = await q.query<{
    id: string; pipeline_id: string; status: RunStatus; created_at: Date; rank: number; superseded_by: string | null; pipeline_active: boolean;
  }>(
    `select r.id, r.pipeline_id, r.status, r.created_at,
       row_number() over (partition by r.pipeline_id order by r.created_at desc, r.id desc)::int as rank,
       (select s.id from etl_runs s where s.pipeline_id = r.pipeline_id and s.status = 'succeeded' and s.created_at > r.created_at
         order by s.created_at desc limit 1) as superseded_by,
       exists (select 1 from etl_runs a where a.pipeline_id = r.pipeline_id and a.status in ('queued', 'running')) as pipeline_active
     from etl_runs r
     where r.status = any($1::text[]) and ($2::text is null or r.pipeline_id = $2)
       and ($3::timestamptz is null or r.created_at >= $3) and ($4::timestamptz is null or r.created_at < $4)
     order by r.pipeline_id, r.created_at desc, r.id desc
     limit $5`,
    [f.statuses, f.pipelineId ?? null, f.since ?? null, f.until ?? null, f.limit ?? 1_000],
  );
  return rows.map((r) => ({
    id: r.id, pipelineId: r.pipeline_id, status: r.status, createdAt: r.created_at, rank: r.rank,
    supersededBy: r.superseded_by, pipelineActive: r.pipeline_active,
  }));
}
