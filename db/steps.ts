import type pg from 'pg';
import { RUN_FAILED_ALERT_CTES, RUN_RECOVERED_ALERT_CTES } from './alerts';

/**
 * Step-level state transitions: claim, checkpoint, complete (with its handoff), fail,
 * release. Each is one SQL statement (CTEs), so a transition is atomic and costs one
 * round trip. Two fences in their WHERE clauses make them idempotent and shut out stale
 * executors:
 * - the flow generation (`etl_runs.generation`): a job of a flow that was rebuilt
 *   (retry, resume, reconciler) cannot claim, complete or fail a step;
 * - the attempt (`etl_run_steps.attempts`): once a step is claimed again (a stall, a
 *   retry, a new generation), every write of the earlier execution matches no row.
 * Run-level transitions (insert, finish, cancel, requeue) are in ./runs.ts. A statement
 * that ends a run also writes its alert (./alerts.ts) in the same statement.
 */

type Q = Pick<pg.Pool, 'query'>;

export interface ClaimedStep {
  attempt: number;
  checkpoint: unknown;
  params: Record<string, unknown>;
  pipelineId: string;
  config: Record<string, unknown>;
  outputs: Record<string, unknown>;
  runStarted: boolean;
}

/** The columns of a claim, as claimStep and completeStep's handoff select them. */
interface ClaimRow {
  attempts: number;
  checkpoint: unknown;
  params: Record<string, unknown>;
  pipeline_id: string;
  config: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

/** Marks the step running for a new attempt. Null when the step must not run (already
 *  succeeded, run no longer active, or this job belongs to an older flow generation).
 *  With `adopt` (the job's first activation), a claim the previous step's completion
 *  made on the job's behalf (a handoff) is taken over as is instead of a new attempt. */
export async function claimStep(q: Q, a: {
  runId: string; key: string; generation: number; jobId: string; worker: string; adopt?: boolean;
  /** For a streaming step: its group's head position (the steps from there on may run at
   *  the same time). Default: the step's own position. */
  groupHead?: number;
}): Promise<ClaimedStep | null> {
  const { rows } = await q.query<ClaimRow & { run_started: boolean }>({
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
         -- a step never runs before every earlier step has succeeded (a streaming step:
         -- every step before its group's head; ARCHITECTURE.md "Overlapped steps")
         and not exists (select 1 from etl_run_steps p where p.run_id = $1 and p.position < coalesce($7::int, st.position)
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
    values: [a.runId, a.key, a.generation, a.jobId, a.worker, a.adopt ?? false, a.groupHead ?? null],
  });
  const row = rows[0];
  if (!row) return null;
  return {
    attempt: row.attempts, checkpoint: row.checkpoint, params: row.params, pipelineId: row.pipeline_id,
    config: row.config, outputs: row.outputs, runStarted: row.run_started,
  };
}

/** Saves an in-progress cursor. Fenced by attempt and status only: a superseded attempt,
 *  or a step no longer running (released, failed, cancelled, requeued), writes nothing. */
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
  // Without a handoff (nx empty) the left joins leave the claim's columns null.
  type Handoff = Omit<ClaimRow, 'outputs'> | { [K in keyof Omit<ClaimRow, 'outputs'>]: null };
  const { rows } = await q.query<Handoff & { n: number; finished: number; own_output: unknown; outputs: Record<string, unknown> }>({
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
       returning id, pipeline_id),${RUN_RECOVERED_ALERT_CTES},
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

/** What a streaming step follows of the step it streams from (steps/stream.ts). */
export interface StreamSourceState {
  status: string;
  attempts: number;
  checkpoint: unknown;
  output: unknown;
  error: string | null;
  runStatus: string;
}

export async function streamSourceState(q: Q, runId: string, key: string): Promise<StreamSourceState | null> {
  const { rows } = await q.query<{ status: string; attempts: number; checkpoint: unknown; output: unknown; error: string | null; run_status: string }>({
    name: 'etl-stream-source',
    text: `select s.status, s.attempts, s.checkpoint, s.output, s.error, r.status as run_status
     from etl_run_steps s join etl_runs r on r.id = s.run_id where s.run_id = $1 and s.key = $2`,
    values: [runId, key],
  });
  const r = rows[0];
  return r ? { status: r.status, attempts: r.attempts, checkpoint: r.checkpoint, output: r.output, error: r.error, runStatus: r.run_status } : null;
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
  const { rows } = await q.query<{ n: number }>({
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
       where id = $1 and $7 and status in ('queued', 'running') and exists (select 1 from s)
       returning id, pipeline_id, error),
     -- Steps of the run still running beside this one (overlapped steps) stop with it:
     -- their writes are fenced off from here, and the 2 s poll aborts them.
     sib as (
       update etl_run_steps set status = 'cancelled', finished_at = now(), handoff = false, updated_at = now(),
         error = 'stopped: step ' || $2 || ' failed'
       where run_id = $1 and key <> $2 and status = 'running' and exists (select 1 from ru)),
     siba as (
       update etl_step_attempts set status = 'cancelled', finished_at = now(), error = 'stopped: step ' || $2 || ' failed'
       where run_id = $1 and step_key <> $2 and status = 'running' and exists (select 1 from ru)),${RUN_FAILED_ALERT_CTES}
     select count(*)::int as n from s`,
    values: [a.runId, a.key, a.generation, a.attempt, a.error, a.stack, a.final],
  });
  return rows[0].n === 1;
}

/** Hands a step back (worker shutdown): pending again, its attempt recorded as
 *  released. The attempt number is not reused: a still-running execution of it stays
 *  fenced off from the next one. */
export async function releaseStep(q: Q, a: { runId: string; key: string; attempt: number; why?: string }): Promise<void> {
  await q.query(
    `with s as (
       update etl_run_steps set status = 'pending', handoff = false, updated_at = now()
       where run_id = $1 and key = $2 and attempts = $3 and status = 'running' returning 1)
     update etl_step_attempts set status = 'released', finished_at = now(), error = $4
     where run_id = $1 and step_key = $2 and attempt = $3 and exists (select 1 from s)`,
    [a.runId, a.key, a.attempt, a.why ?? 'handed back at worker shutdown'],
  );
}

/** The succeeded steps' checkpoints, for rerun-from: what the new run copies. */
export async function stepOutputs(q: Q, runId: string): Promise<Map<string, {
  output: unknown; rowsIn: number | null; rowsOut: number | null; startedAt: Date | null; finishedAt: Date | null;
}>> {
  const { rows } = await q.query<{
    key: string; output: unknown; rows_in: number | null; rows_out: number | null; started_at: Date | null; finished_at: Date | null;
  }>(
    `select key, output, rows_in, rows_out, started_at, finished_at from etl_run_steps where run_id = $1 and status = 'succeeded'`,
    [runId],
  );
  return new Map(rows.map((r) => [r.key, { output: r.output, rowsIn: r.rows_in, rowsOut: r.rows_out, startedAt: r.started_at, finishedAt: r.finished_at }]));
}
