import { DelayedError, type Job } from 'bullmq';
import type { Database } from '../../db/client';
import * as stepState from '../../db/steps';
import type { Logger } from '../../lib/logger';
import { abortReason } from '../../lib/abort';
import { withDbRetry } from '../../lib/pg-retry';
import { NonRetryableError, StepAbortedError } from '../../lib/errors';
import { groupHead, type Registry, type WorkflowDef } from './define';
import type { StepContext, StepDef } from '../../steps/define';
import { watchStep, type ActiveSteps } from './active-steps';
import type { EventBus } from './events';
import { stepJobId, type RunJobData, type StepJobData } from './flow';
import type { GroupCommit } from './group-commit';
import { createHandoffs, type Handoffs } from './handoffs';
import { settleFailure } from './settle';
import { createStepTelemetry, type StepTelemetry } from './step-telemetry';

export { ActiveSteps } from './active-steps';

/**
 * Executes BullMQ jobs of run flows. A step job: claim the step in Postgres (a fenced
 * update that refuses succeeded steps, inactive runs and stale flow generations), run the
 * step with an AbortSignal, record the result. Recording a success also claims the next
 * step for its job (a handoff), so a step costs one Postgres round trip; the last step's
 * success marks the run succeeded, leaving the root job nothing to do.
 * Parts: handoffs.ts (claims kept for the next job), active-steps.ts (abort controllers,
 * cancels), settle.ts (what a failed execution becomes).
 */
export interface RunnerDeps {
  db: Database;
  registry: Registry;
  services: unknown;
  events: EventBus;
  log: Logger;
  workerId: string;
  /** Runs being executed here, so a cancel broadcast can abort their steps. */
  active: ActiveSteps;
  /** Claims and completions go through it when given (group-commit.ts). */
  group?: GroupCommit;
}

type Runner = RunnerDeps & { handoffs: Handoffs };

export function createRunner(deps: RunnerDeps) {
  const r: Runner = { ...deps, handoffs: createHandoffs({ db: deps.db, log: deps.log, active: deps.active }) };
  return async function process(job: Job, token?: string, signal?: AbortSignal) {
    return job.name === 'run' ? processRun(job as Job<RunJobData>) : processStep(r, job as Job<StepJobData>, token, signal);
  };
}

// The root job has nothing left to do: the last step marks the run succeeded in the
// same statement that records its own success, and a flow rebuilt with no step left to
// run is finished by the engine without a flow. The root exists so the run is one
// BullMQ flow (and its completion is visible in BullMQ).
function processRun(job: Job<RunJobData>): Promise<{ runId: string }> {
  return Promise.resolve({ runId: job.data.runId });
}

async function processStep(r: Runner, job: Job<StepJobData>, token: string | undefined, jobSignal: AbortSignal | undefined) {
  const { runId, key, pipelineId } = job.data;
  const wf = r.registry.get(job.data.workflow);
  const step = wf?.steps.find((s) => s.key === key);
  const local = r.handoffs.take(job);
  const claimed = local ?? (await claim(r, job, token, step?.streams ? groupHead(wf!.steps, wf!.steps.indexOf(step)) : undefined));
  // Already succeeded, run cancelled/finished, an earlier step not succeeded, or an
  // older generation's job: nothing to do (the reconciler repairs a run left behind).
  if (!claimed) return { skipped: true };
  const attempt = claimed.attempt;
  const slog = r.log.child({ runId, pipelineId, step: key, attempt });
  if (claimed.runStarted) r.events.run(runId, pipelineId, 'running');
  if (!local) r.events.step(runId, pipelineId, key, 'running', attempt); // a handoff announced it already

  const running = watchStep(r.active, { runId, key, timeoutMs: step?.timeoutMs, jobSignal });
  const telemetry = createStepTelemetry({ db: r.db, events: r.events, log: slog, runId, pipelineId, key, attempt });
  try {
    if (!step) throw new NonRetryableError(`workflow ${job.data.workflow} has no step ${key} in this build`);
    return await execute(r, job, wf!, step, claimed, running.controller.signal, slog, telemetry);
  } catch (raw) {
    return await settleFailure(r, { job, token, attempt, signal: running.controller.signal, log: slog, telemetry }, raw);
  } finally {
    running.release();
    await telemetry.close();
  }
}

/** The fenced claim in Postgres; null when there is nothing to do. */
async function claim(r: Runner, job: Job<StepJobData>, token: string | undefined, groupHead?: number): Promise<stepState.ClaimedStep | null> {
  const { runId, generation, key } = job.data;
  try {
    return await stateWrite(r, (q) => stepState.claimStep(q, {
      runId, key, generation, jobId: job.id!, worker: r.workerId, adopt: job.attemptsStarted === 1, groupHead,
    }));
  } catch (err) {
    // Postgres is still away after the retries: the step never started, so put the job
    // back without spending one of its attempts.
    r.log.warn({ runId, step: key, err: String(err) }, 'cannot claim the step (database unavailable); retrying later');
    if (!token) throw err;
    await job.moveToDelayed(Date.now() + 5_000, token);
    throw new DelayedError();
  }
}

/** A claim or completion: in the worker's group commit, or alone; retried through an outage. */
function stateWrite<T>(r: Runner, statement: (q: Pick<Database['pool'], 'query'>) => Promise<T>): Promise<T> {
  return r.group ? r.group.run(statement) : withDbRetry(() => statement(r.db.pool));
}

/** Runs a claimed step and records its success (claiming the next step: a handoff). */
async function execute(
  r: Runner, job: Job<StepJobData>, wf: WorkflowDef, step: StepDef, claimed: stepState.ClaimedStep, signal: AbortSignal, slog: Logger,
  telemetry: StepTelemetry,
) {
  const { runId, generation, key, pipelineId } = job.data;
  const { attempt } = claimed;
  let rows: { in?: number; out?: number } = {};
  const ctx = stepContext(r, job, wf, step, claimed, signal, slog, telemetry, (x) => {
    rows = { ...rows, ...x };
    const done = x.in ?? x.out;
    if (done !== undefined) telemetry.progress({ rowsDone: done });
  });
  const output = await untilAborted(step.run(ctx), signal);
  const checked = step.output ? parseWith(step, 'output', output) : output;
  const nextStep = wf.steps[wf.steps.indexOf(step) + 1];
  // A streaming next step is running (or queued) already: no handoff to it.
  const next = nextStep && !nextStep.streams ? { key: nextStep.key, jobId: stepJobId(runId, generation, nextStep.key), worker: r.workerId } : undefined;
  // The attempt's buffered events go in parallel with its completion: no added latency.
  r.handoffs.settled(job.id!); // the completion clears the handoff flag itself
  const [done] = await Promise.all([stateWrite(r, (q) => stepState.completeStep(q, {
    runId, key, generation, attempt, output: checked, rowsIn: rows.in ?? null, rowsOut: rows.out ?? null, last: !nextStep, next,
  })), telemetry.flush()]);
  const { runFinished } = done;
  if (done.done) r.events.step(runId, pipelineId, key, 'succeeded', attempt);
  else slog.warn('step finished but its attempt was superseded; result discarded');
  if (runFinished) r.events.run(runId, pipelineId, 'succeeded');
  if (done.next && next) {
    r.handoffs.keep(next.jobId, done.next);
    r.events.step(runId, pipelineId, next.key, 'running', done.next.attempt);
  }
  return { ok: done.done, runFinished };
}

/** The step's context: the pipeline config and its input, both schema-checked. */
function stepContext(
  r: Runner, job: Job<StepJobData>, wf: WorkflowDef, step: StepDef, claimed: stepState.ClaimedStep, signal: AbortSignal, slog: Logger,
  telemetry: StepTelemetry, reportRows: StepContext['reportRows'],
): StepContext {
  const { runId, key, pipelineId } = job.data;
  const { attempt } = claimed;
  const parsed = wf.config ? wf.config.safeParse(claimed.config) : { success: true as const, data: claimed.config };
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new NonRetryableError(`pipeline config is invalid at ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  const index = wf.steps.indexOf(step);
  const previous = index > 0 ? claimed.outputs[wf.steps[index - 1].key] : undefined;
  return {
    runId, pipelineId, stepKey: key, attempt, signal, config: parsed.data,
    // A streaming step may start before the step it streams from has an output.
    params: claimed.params, input: step.input && !(step.streams && previous === undefined) ? parseWith(step, 'input', previous) : previous,
    outputs: claimed.outputs,
    checkpoint: claimed.checkpoint,
    saveCheckpoint: async (value) => {
      // Buffered events are written beside the checkpoint, in parallel: one wait, not two.
      const [ok] = await Promise.all([
        withDbRetry(() => stepState.saveCheckpoint(r.db.pool, { runId, key, attempt, checkpoint: value }), { signal }),
        telemetry.flush(),
      ]);
      if (!ok) throw new StepAbortedError('the step was taken over or cancelled', 'cancelled');
      r.events.step(runId, pipelineId, key, 'running', attempt);
    },
    reportRows,
    event: (type, message, data) => telemetry.event(type, message, data),
    progress: (p) => telemetry.progress(p),
    services: r.services,
    log: slog,
  };
}

function parseWith(step: StepDef, which: 'input' | 'output', value: unknown): unknown {
  const r = step[which]!.safeParse(value);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  const what = which === 'input' ? 'was given an invalid input' : 'returned an invalid output';
  throw new NonRetryableError(`step ${step.key} ${what} at ${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** Resolves with the step's result, or rejects as soon as the signal aborts, even if the
 *  step's code ignores the signal (its promise is then left to settle on its own). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
