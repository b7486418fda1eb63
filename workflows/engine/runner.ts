import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Database } from '../../db/client';
import * as runs from '../../db/runs';
import type { Logger } from '../../lib/logger';
import { withDbRetry } from '../../lib/pg-retry';
import { redact } from '../../lib/redact';
import { NonRetryableError, StepAbortedError } from '../../steps/errors';
import type { Registry, StepContext, StepDef } from './define';
import type { EventBus } from './events';
import { stepJobId, type RunJobData, type StepJobData } from './flow';

/**
 * Executes BullMQ jobs of run flows. A step job: claim the step in Postgres (a fenced
 * update that refuses succeeded steps, inactive runs and stale flow generations), run the
 * step with an AbortSignal, record the result. Recording a success also claims the next
 * step for its job (a handoff), so a step costs one Postgres round trip; the last step's
 * success marks the run succeeded, leaving the root job nothing to do.
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
}

export class ActiveSteps {
  private byRun = new Map<string, Set<AbortController>>();
  /** Runs this process heard were cancelled, kept a minute: a handoff claimed before the
   *  cancel is then not taken over locally (the Postgres claim refuses it). */
  private cancelled = new Map<string, number>();

  add(runId: string, c: AbortController): () => void {
    let set = this.byRun.get(runId);
    if (!set) this.byRun.set(runId, (set = new Set()));
    set.add(c);
    return () => {
      set!.delete(c);
      if (set!.size === 0) this.byRun.delete(runId);
    };
  }

  abortRun(runId: string, reason: StepAbortedError): void {
    if (reason.reason === 'cancelled') {
      const now = Date.now();
      for (const [id, at] of this.cancelled) {
        if (now - at < 60_000) break;
        this.cancelled.delete(id);
      }
      this.cancelled.set(runId, now);
    }
    for (const c of this.byRun.get(runId) ?? []) c.abort(reason);
  }

  wasCancelled(runId: string): boolean {
    return this.cancelled.has(runId);
  }

  abortAll(reason: StepAbortedError): void {
    for (const id of this.byRun.keys()) this.abortRun(id, reason);
  }

  runIds(): string[] {
    return [...this.byRun.keys()];
  }

  get size(): number {
    return this.byRun.size;
  }
}

/** How long a handoff may wait for its job and still be taken over without Postgres;
 *  an older one (a backed-up queue) goes through the fenced claim, which re-checks the run. */
const HANDOFF_FRESH_MS = 1_000;

export function createRunner(deps: RunnerDeps) {
  const { db, registry, events, log, workerId } = deps;
  // Claims this process made for the next step's job when completing a step, by job id.
  const handoffs = new Map<string, { claim: runs.ClaimedStep; at: number }>();
  function keepHandoff(jobId: string, claim: runs.ClaimedStep) {
    const now = Date.now();
    for (const [id, h] of handoffs) {
      if (now - h.at < HANDOFF_FRESH_MS && handoffs.size < 10_000) break;
      handoffs.delete(id);
    }
    handoffs.set(jobId, { claim, at: now });
  }
  // Handoffs taken here are recorded in Postgres within a few milliseconds, many to a
  // statement, without holding the step back: until then the claim is ours only by
  // BullMQ's activation count; after, no redelivery of the job (say, by a Redis that lost
  // recent writes) can adopt the same attempt from Postgres.
  let taken: { runId: string; key: string; attempt: number }[] = [];
  let takenTimer: NodeJS.Timeout | undefined;
  function recordTaken(h: { runId: string; key: string; attempt: number }) {
    taken.push(h);
    takenTimer ??= setTimeout(() => {
      const list = taken;
      taken = [];
      takenTimer = undefined;
      withDbRetry(() => runs.markHandoffsTaken(db.pool, list), { retries: 3 })
        .catch((err) => log.warn({ n: list.length, err: String(err) }, 'could not record handoffs as taken'));
    }, 5);
  }
  /** The handoff for this job, if this is its first activation (BullMQ counts
   *  activations atomically, so no other execution of the job can take it too). */
  function takeHandoff(job: Job<StepJobData>): runs.ClaimedStep | null {
    const h = handoffs.get(job.id!);
    if (!h) return null;
    handoffs.delete(job.id!);
    if (job.attemptsStarted !== 1 || Date.now() - h.at >= HANDOFF_FRESH_MS || deps.active.wasCancelled(job.data.runId)) return null;
    return h.claim;
  }

  // The root job has nothing left to do: the last step marks the run succeeded in the
  // same statement that records its own success, and a flow rebuilt with no step left to
  // run is finished by the engine without a flow. The root exists so the run is one
  // BullMQ flow (and its completion is visible in BullMQ).
  async function processRun(job: Job<RunJobData>) {
    return { runId: job.data.runId };
  }

  async function processStep(job: Job<StepJobData>, token: string | undefined, jobSignal: AbortSignal | undefined) {
    const { runId, generation, key, pipelineId } = job.data;
    const step = registry.get(job.data.workflow)?.steps.find((s) => s.key === key);
    const local = takeHandoff(job);
    if (local) recordTaken({ runId, key, attempt: local.attempt });
    let claim = local;
    try {
      claim ??= await withDbRetry(() => runs.claimStep(db.pool, {
        runId, key, generation, jobId: job.id!, worker: workerId, adopt: job.attemptsStarted === 1,
      }));
    } catch (err) {
      // Postgres is still away after the retries: the step never started, so put the job
      // back without spending one of its attempts.
      log.warn({ runId, step: key, err: String(err) }, 'cannot claim the step (database unavailable); retrying later');
      if (!token) throw err;
      await job.moveToDelayed(Date.now() + 5_000, token);
      throw new DelayedError();
    }
    // Already succeeded, run cancelled/finished, an earlier step not succeeded, or an
    // older generation's job: nothing to do (the reconciler repairs a run left behind).
    if (!claim) return { skipped: true };
    const attempt = claim.attempt;
    const slog = log.child({ runId, pipelineId, step: key, attempt });
    if (claim.runStarted) events.run(runId, pipelineId, 'running');
    if (!local) events.step(runId, pipelineId, key, 'running', attempt); // a handoff announced it already

    const controller = new AbortController();
    const release = deps.active.add(runId, controller);
    const timeout = setTimeout(
      () => controller.abort(new StepAbortedError(`step ${key} timed out after ${step?.timeoutMs} ms`, 'timeout')),
      step?.timeoutMs ?? 0,
    );
    const onJobAbort = () => controller.abort(new StepAbortedError('the worker is shutting down', 'shutdown'));
    jobSignal?.addEventListener('abort', onJobAbort, { once: true });
    let rows: { in?: number; out?: number } = {};
    try {
      if (!step) throw new NonRetryableError(`workflow ${job.data.workflow} has no step ${key} in this build`);
      const wf = registry.get(job.data.workflow)!;
      const parsed = wf.config ? wf.config.safeParse(claim.config) : { success: true as const, data: claim.config };
      if (!parsed.success) {
        const i = parsed.error.issues[0]!;
        throw new NonRetryableError(`pipeline config is invalid at ${i.path.join('.') || '(root)'}: ${i.message}`);
      }
      const index = wf.steps.indexOf(step);
      const ctx: StepContext = {
        runId, pipelineId, stepKey: key, attempt, signal: controller.signal, config: parsed.data as Record<string, unknown>,
        params: claim.params, input: index > 0 ? claim.outputs[wf.steps[index - 1]!.key] : undefined, outputs: claim.outputs,
        checkpoint: claim.checkpoint,
        saveCheckpoint: async (value) => {
          const ok = await withDbRetry(() => runs.saveCheckpoint(db.pool, { runId, key, attempt, checkpoint: value }), { signal: controller.signal });
          if (!ok) throw new StepAbortedError('the step was taken over or cancelled', 'cancelled');
          events.step(runId, pipelineId, key, 'running', attempt);
        },
        reportRows: (r) => {
          rows = { ...rows, ...r };
        },
        services: deps.services,
        log: slog,
      };
      const output = await untilAborted(step.run(ctx), controller.signal);
      const checked = step.output ? parseOutput(step, output) : output;
      const nextStep = wf.steps[index + 1];
      const next = nextStep && { key: nextStep.key, jobId: stepJobId(runId, generation, nextStep.key), worker: workerId };
      const done = await withDbRetry(() => runs.completeStep(db.pool, {
        runId, key, generation, attempt, output: checked, rowsIn: rows.in ?? null, rowsOut: rows.out ?? null, last: !nextStep, next,
      }));
      const { runFinished } = done;
      if (done.done) events.step(runId, pipelineId, key, 'succeeded', attempt);
      else slog.warn('step finished but its attempt was superseded; result discarded');
      if (runFinished) events.run(runId, pipelineId, 'succeeded');
      if (done.next && next) {
        keepHandoff(next.jobId, done.next);
        events.step(runId, pipelineId, next.key, 'running', done.next.attempt);
      }
      return { ok: done.done, runFinished };
    } catch (raw) {
      const err = controller.signal.aborted && controller.signal.reason instanceof StepAbortedError ? controller.signal.reason : raw;
      if (err instanceof StepAbortedError && err.reason === 'shutdown' && token) {
        // Hand the step back without charging a retry (BullMQ's attemptsMade is untouched);
        // the next execution gets a new attempt number, so the two never share staging.
        await withDbRetry(() => runs.releaseStep(db.pool, { runId, key, attempt }), { retries: 2 }).catch(() => {});
        await job.moveToDelayed(Date.now() + 250, token);
        throw new DelayedError();
      }
      if (err instanceof StepAbortedError && err.reason === 'cancelled') {
        slog.info('step aborted: run cancelled');
        return { cancelled: true };
      }
      const final = err instanceof NonRetryableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      // Redacted before cut (lib/redact.ts): a cut first could leave half a secret.
      const message = redact(errorMessage(err), { max: 4_000 });
      const stack = err instanceof Error && err.stack ? redact(err.stack, { max: 16_000 }) : null;
      let recorded: boolean;
      try {
        recorded = await withDbRetry(() => runs.failStep(db.pool, { runId, key, generation, attempt, error: message, stack, final }));
      } catch (dbErr) {
        // Unrecorded, the failure must not let the flow move on: BullMQ retries the job
        // (or fails it, and with it the run's flow, which the reconciler rebuilds).
        slog.error({ err: String(dbErr) }, 'could not record step failure');
        throw new Error(message);
      }
      if (!recorded) return { superseded: true };
      slog.warn({ final, error: message }, final ? 'step failed' : 'step attempt failed; will retry');
      events.step(runId, pipelineId, key, final ? 'failed' : 'pending', attempt);
      if (final) events.run(runId, pipelineId, 'failed');
      if (final) throw new UnrecoverableError(message);
      const toThrow = new Error(message) as Error & { retryAfterMs?: number };
      toThrow.retryAfterMs = (err as { retryAfterMs?: number }).retryAfterMs;
      throw toThrow;
    } finally {
      clearTimeout(timeout);
      jobSignal?.removeEventListener('abort', onJobAbort);
      release();
    }
  }

  return async function process(job: Job, token?: string, signal?: AbortSignal) {
    return job.name === 'run' ? processRun(job as Job<RunJobData>) : processStep(job as Job<StepJobData>, token, signal);
  };
}

function parseOutput(step: StepDef, output: unknown): unknown {
  const r = step.output!.safeParse(output);
  if (r.success) return r.data;
  const i = r.error.issues[0]!;
  throw new NonRetryableError(`step ${step.key} returned an invalid output at ${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** Resolves with the step's result, or rejects as soon as the signal aborts, even if the
 *  step's code ignores the signal (its promise is then left to settle on its own). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
}
