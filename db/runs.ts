import type pg from 'pg';
import type { Actor, RunStatus, StepStatus, Trigger } from './schema';

/**
 * The engine's state transitions, each one SQL statement (CTEs) so a transition is atomic
 * and costs one round trip. Guards in WHERE clauses make every transition idempotent and
 * fence off stale executors: a step write only lands if the run is still on the same
 * flow generation and the step is still on the same attempt.
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

export interface ClaimedStep {
  attempt: number;
  checkpoint: unknown;
  params: Record<string, unknown>;
  pipelineId: string;
  config: Record<string, unknown>;
  outputs: Record<string, unknown>;
  runStarted: boolean;
}

/** Marks the step running for a new attempt. Null when the step must not run (already
 *  succeeded, run no longer active, or this job belongs to an older flow generation).
 *  With `adopt` (the job's first activation), a claim the previous step's completion
 *  made on the job's behalf (a handoff) is taken over as is instead of a new attempt. */
export async function claimStep(q: Q, a: {
  runId: string; key: string; generation: number; jobId: string; worker: string; adopt?: boolean;
}): Promise<ClaimedStep | null> {
  const { rows } = await q.query({
    name: 'etl-claim-step',
    text: `with o as (
       select ($6::boolean and handoff and status = 'running' and job_id = $4) as adopt
       from etl_run_steps where run_id = $1 and key = $2),
     s as (
       update etl_run_steps st set status = 'running', attempts = st.attempts + case when o.adopt then 0 else 1 end,
         started_at = coalesce(st.started_at, now()), finished_at = null, job_id = $4, handoff = false, updated_at = now()
       from etl_runs r, o
       where st.run_id = $1 and st.key = $2 and r.id = st.run_id and r.generation = $3
         and r.status in ('queued', 'running') and st.status in ('pending', 'running', 'failed')
         -- a step never runs before every earlier step has succeeded
         and not exists (select 1 from etl_run_steps p where p.run_id = $1 and p.position < st.position
                         and p.status not in ('succeeded', 'skipped'))
       returning st.attempts, st.checkpoint, o.adopt),
     lost as (
       update etl_step_attempts set status = 'lost', finished_at = now(), error = coalesce(error, 'worker lost the step')
       where run_id = $1 and step_key = $2 and status = 'running' and exists (select 1 from s where not s.adopt)),
     ins as (
       insert into etl_step_attempts (run_id, step_key, attempt, status, worker)
       select $1, $2, s.attempts, 'running', $5 from s where not s.adopt),
     adopted as (
       update etl_step_attempts a set worker = $5
       from s where s.adopt and a.run_id = $1 and a.step_key = $2 and a.attempt = s.attempts),
     ru as (
       update etl_runs set status = 'running', started_at = coalesce(started_at, now()), updated_at = now()
       where id = $1 and status = 'queued' and exists (select 1 from s) returning id)
     select s.attempts, s.checkpoint, r.params, r.pipeline_id, p.config, exists (select 1 from ru) as run_started,
       (select coalesce(jsonb_object_agg(key, output), '{}'::jsonb) from etl_run_steps
         where run_id = $1 and status = 'succeeded') as outputs
     from s, etl_runs r join etl_pipelines p on p.id = r.pipeline_id where r.id = $1`,
    values: [a.runId, a.key, a.generation, a.jobId, a.worker, a.adopt ?? false],
  });
  const row = rows[0];
  if (!row) return null;
  return {
    attempt: row.attempts, checkpoint: row.checkpoint, params: row.params, pipelineId: row.pipeline_id,
    config: row.config, outputs: row.outputs, runStarted: row.run_started,
  };
}

export async function saveCheckpoint(q: Q, a: { runId: string; key: string; attempt: number; checkpoint: unknown }): Promise<boolean> {
  const r = await q.query({
    name: 'etl-save-checkpoint',
    text: `update etl_run_steps set checkpoint = $4, updated_at = now()
     where run_id = $1 and key = $2 and attempts = $3 and status = 'running'`,
    values: [a.runId, a.key, a.attempt, JSON.stringify(a.checkpoint)],
  });
  return r.rowCount === 1;
}

/** Records a step's success. For the last step it also marks the run succeeded (when
 *  every other step has), saving the root job a round trip. Otherwise, given `next`, it
 *  claims the next step in the same statement on behalf of that step's job (a handoff,
 *  `handoff = true`): the job's first activation takes the claim over, locally in the
 *  worker that made it or with claimStep's `adopt`, so a step costs one round trip. */
export async function completeStep(q: Q, a: {
  runId: string; key: string; generation: number; attempt: number; output: unknown; rowsIn: number | null; rowsOut: number | null;
  last: boolean; next?: { key: string; jobId: string; worker: string };
}): Promise<{ done: boolean; runFinished: boolean; next: ClaimedStep | null }> {
  const output = JSON.stringify(a.output ?? null);
  const { rows } = await q.query({
    name: 'etl-complete-step',
    text: `with s as (
       update etl_run_steps st set status = 'succeeded', output = $5, rows_in = $6, rows_out = $7, finished_at = now(),
         error = null, error_stack = null, handoff = false, updated_at = now()
       from etl_runs r
       where st.run_id = $1 and st.key = $2 and st.attempts = $4 and st.status = 'running'
         and r.id = st.run_id and r.generation = $3 and r.status in ('queued', 'running')
       returning st.output),
     a as (
       update etl_step_attempts set status = 'succeeded', finished_at = now()
       where run_id = $1 and step_key = $2 and attempt = $4 and exists (select 1 from s)),
     ru as (
       update etl_runs set status = 'succeeded', finished_at = now(), updated_at = now(), error = null,
         rows = jsonb_build_object(
           'in', (select rows_out from etl_run_steps where run_id = $1 order by position asc limit 1),
           'out', $7::int)
       where id = $1 and $8 and generation = $3 and status in ('queued', 'running') and exists (select 1 from s)
         and not exists (select 1 from etl_run_steps where run_id = $1 and key <> $2 and status not in ('succeeded', 'skipped'))
       returning 1),
     nx as (
       update etl_run_steps st set status = 'running', attempts = st.attempts + 1, started_at = coalesce(st.started_at, now()),
         finished_at = null, job_id = $10, handoff = true, updated_at = now()
       where st.run_id = $1 and st.key = $9 and st.status in ('pending', 'failed') and exists (select 1 from s)
         -- this statement sees step $2 as it was (running): every other earlier step must have succeeded
         and not exists (select 1 from etl_run_steps p where p.run_id = $1 and p.position < st.position and p.key <> $2
                         and p.status not in ('succeeded', 'skipped'))
       returning st.attempts, st.checkpoint),
     nxa as (
       insert into etl_step_attempts (run_id, step_key, attempt, status, worker)
       select $1, $9, nx.attempts, 'running', $11 from nx)
     select (select count(*)::int from s) as n, (select count(*)::int from ru) as finished,
       nx.attempts, nx.checkpoint, r.params, r.pipeline_id, p.config, (select output from s) as own_output,
       (select coalesce(jsonb_object_agg(key, output), '{}'::jsonb) from etl_run_steps
         where run_id = $1 and status = 'succeeded') as outputs
     from (select 1) one
       left join nx on true
       left join etl_runs r on r.id = $1 and nx.attempts is not null
       left join etl_pipelines p on p.id = r.pipeline_id`,
    values: [a.runId, a.key, a.generation, a.attempt, output, a.rowsIn, a.rowsOut, a.last,
      a.next?.key ?? null, a.next?.jobId ?? null, a.next?.worker ?? null],
  });
  const row = rows[0];
  const next: ClaimedStep | null = row.attempts == null ? null : {
    attempt: row.attempts, checkpoint: row.checkpoint, params: row.params, pipelineId: row.pipeline_id, config: row.config,
    // The statement saw the outputs from before it: add the one it recorded (as stored,
    // so the next step reads exactly what a claim from Postgres would give it).
    outputs: { ...row.outputs, [a.key]: row.own_output }, runStarted: false,
  };
  return { done: row.n === 1, runFinished: row.finished === 1, next };
}

/** Records that the workers which made these handoffs took them over themselves, so no
 *  other activation of their jobs can adopt them (see claimStep). One statement for many. */
export async function markHandoffsTaken(q: Q, list: readonly { runId: string; key: string; attempt: number }[]): Promise<void> {
  if (list.length === 0) return;
  await q.query({
    name: 'etl-handoffs-taken',
    text: `update etl_run_steps s set handoff = false
     from jsonb_to_recordset($1::jsonb) as t(run_id uuid, key text, attempt int)
     where s.run_id = t.run_id and s.key = t.key and s.attempts = t.attempt and s.handoff`,
    values: [JSON.stringify(list.map((h) => ({ run_id: h.runId, key: h.key, attempt: h.attempt })))],
  });
}

/** Records a failed attempt. `final` moves the step and the run to failed; otherwise the
 *  step goes back to pending until BullMQ's backoff runs it again. */
export async function failStep(q: Q, a: {
  runId: string; key: string; generation: number; attempt: number; error: string; stack: string | null; final: boolean;
}): Promise<boolean> {
  const { rows } = await q.query({
    name: 'etl-fail-step',
    text: `with s as (
       update etl_run_steps st set status = case when $7 then 'failed' else 'pending' end, error = $5, error_stack = $6,
         handoff = false, finished_at = case when $7 then now() else null end, updated_at = now()
       from etl_runs r
       where st.run_id = $1 and st.key = $2 and st.attempts = $4 and st.status = 'running'
         and r.id = st.run_id and r.generation = $3
       returning 1),
     a as (
       update etl_step_attempts set status = 'failed', finished_at = now(), error = $5, error_stack = $6
       where run_id = $1 and step_key = $2 and attempt = $4 and exists (select 1 from s)),
     ru as (
       update etl_runs set status = 'failed', error = $2 || ': ' || $5, finished_at = now(), updated_at = now()
       where id = $1 and $7 and status in ('queued', 'running') and exists (select 1 from s))
     select count(*)::int as n from s`,
    values: [a.runId, a.key, a.generation, a.attempt, a.error, a.stack, a.final],
  });
  return rows[0].n === 1;
}

/** Hands a step back (worker shutdown): pending again, its attempt recorded as
 *  released. The attempt number is not reused: a still-running execution of it stays
 *  fenced off from the next one. */
export async function releaseStep(q: Q, a: { runId: string; key: string; attempt: number }): Promise<void> {
  await q.query(
    `with s as (
       update etl_run_steps set status = 'pending', handoff = false, updated_at = now()
       where run_id = $1 and key = $2 and attempts = $3 and status = 'running' returning 1)
     update etl_step_attempts set status = 'released', finished_at = now(), error = 'handed back at worker shutdown'
     where run_id = $1 and step_key = $2 and attempt = $3 and exists (select 1 from s)`,
    [a.runId, a.key, a.attempt],
  );
}

/** The root job's transition: succeeded once every step has. Returns the pipeline id. */
export async function finishRun(q: Q, a: { runId: string; generation: number }): Promise<string | null> {
  const { rows } = await q.query({
    name: 'etl-finish-run',
    text: `update etl_runs r set status = 'succeeded', finished_at = now(), updated_at = now(), error = null,
       rows = (select jsonb_build_object(
                 'in', (select rows_out from etl_run_steps where run_id = $1 order by position asc limit 1),
                 'out', (select rows_out from etl_run_steps where run_id = $1 order by position desc limit 1)))
     where id = $1 and generation = $2 and status in ('queued', 'running')
       and not exists (select 1 from etl_run_steps where run_id = $1 and status not in ('succeeded', 'skipped'))
     returning pipeline_id`,
    values: [a.runId, a.generation],
  });
  return rows[0]?.pipeline_id ?? null;
}

export async function cancelRun(q: Q, runId: string, reason: string): Promise<{ pipelineId: string; generation: number } | null> {
  const { rows } = await q.query(
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

export async function getRunState(q: Q, runId: string, opts: { forUpdate?: boolean } = {}): Promise<RunState | null> {
  const { rows } = await q.query(
    `select id, pipeline_id, status, generation, updated_at from etl_runs where id = $1 ${opts.forUpdate ? 'for update' : ''}`,
    [runId],
  );
  if (!rows[0]) return null;
  const steps = await q.query(
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
 *  step not yet succeeded becomes pending. Attempts still marked running are lost. */
export async function requeueRun(q: Q, runId: string, generation: number): Promise<number> {
  const { rows } = await q.query(
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
  const { rows } = await q.query(
    `select id, generation, status from etl_runs
     where status in ('queued', 'running') and updated_at < now() - make_interval(secs => $1::float8 / 1000)`,
    [olderThanMs],
  );
  return rows;
}

export async function cancelledAmong(q: Q, runIds: string[]): Promise<string[]> {
  if (runIds.length === 0) return [];
  const { rows } = await q.query(`select id from etl_runs where id = any($1::uuid[]) and status = 'cancelled'`, [runIds]);
  return rows.map((r) => r.id);
}

export async function stepOutputs(q: Q, runId: string): Promise<Map<string, {
  output: unknown; rowsIn: number | null; rowsOut: number | null; startedAt: Date | null; finishedAt: Date | null;
}>> {
  const { rows } = await q.query(
    `select key, output, rows_in, rows_out, started_at, finished_at from etl_run_steps where run_id = $1 and status = 'succeeded'`,
    [runId],
  );
  return new Map(rows.map((r) => [r.key, { output: r.output, rowsIn: r.rows_in, rowsOut: r.rows_out, startedAt: r.started_at, finishedAt: r.finished_at }]));
}

export async function runParams(q: Q, runId: string): Promise<Record<string, unknown>> {
  const { rows } = await q.query('select params from etl_runs where id = $1', [runId]);
  return rows[0]?.params ?? {};
}

/** Inserts many runs in one statement. A run that would break a unique rule (an active
 *  run of an exclusive pipeline, a tick that already has its run) is left out; the ids
 *  of the runs inserted are returned. */
export async function insertRuns(q: Q, list: NewRun[]): Promise<Set<string>> {
  if (list.length === 0) return new Set();
  const { rows } = await q.query(
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
