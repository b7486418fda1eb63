import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Database } from '../../db/client';
import * as stepState from '../../db/steps';
import type { Logger } from '../../lib/logger';
import { withDbRetry } from '../../lib/pg-retry';
import { redact } from '../../lib/redact';
import { NonRetryableError, StepAbortedError, StepYieldError } from '../../lib/errors';
import type { EventBus } from './events';
import { backoffDelay, type StepJobData } from './flow';
import type { StepTelemetry } from './step-telemetry';

/**
 * How a step execution that threw ends, in Postgres and in BullMQ (only the worker maps
 * errors to BullMQ's): a shutdown hands the step back, a cancel ends quietly, anything
 * else is a failed attempt — retried after the step's backoff, or final (a
 * `NonRetryableError`, or the last attempt), which fails the step, the run and the flow.
 */
export interface FailedExecution {
  job: Job<StepJobData>;
  token: string | undefined;
  attempt: number;
  /** The step's abort signal: when it fired, its reason is the error, whatever the step threw. */
  signal: AbortSignal;
  log: Logger;
  /** The attempt's event log: a retry is recorded there with its reason and delay. */
  telemetry?: Pick<StepTelemetry, 'event'>;
}

export async function settleFailure(
  deps: { db: Database; events: EventBus },
  a: FailedExecution,
  raw: unknown,
): Promise<{ cancelled: true } | { superseded: true }> {
  const { runId, key } = a.job.data;
  const err = a.signal.aborted && a.signal.reason instanceof StepAbortedError ? a.signal.reason : raw;
  if (err instanceof StepAbortedError && err.reason === 'shutdown' && a.token) {
    // Hand the step back without charging a retry (BullMQ's attemptsMade is untouched);
    // the next execution gets a new attempt number, so the two never share staging.
    await withDbRetry(() => stepState.releaseStep(deps.db.pool, { runId, key, attempt: a.attempt }), { retries: 2 }).catch(() => {});
    await a.job.moveToDelayed(Date.now() + 250, a.token);
    throw new DelayedError();
  }
  if (err instanceof StepYieldError && a.token) {
    // A streaming step waiting for a producer that is not running: hand it back, as above.
    a.log.info({ reason: err.message }, 'step handed back until its producer runs');
    await withDbRetry(() => stepState.releaseStep(deps.db.pool, { runId, key, attempt: a.attempt, why: err.message }), { retries: 2 }).catch(() => {});
    // Longer each time the job is handed back (up to 16×): a producer waiting out a long
    // backoff is not polled by a stream of short attempts.
    const times = Math.min(4, Math.max(0, (a.job.attemptsStarted ?? 1) - 1));
    await a.job.moveToDelayed(Date.now() + err.delayMs * 2 ** times, a.token);
    throw new DelayedError();
  }
  if (err instanceof StepAbortedError && err.reason === 'cancelled') {
    a.log.info('step aborted: run cancelled');
    return { cancelled: true };
  }
  return recordFailure(deps, a, err);
}

/** Records a failed attempt, then throws what tells BullMQ to retry it or to fail the flow. */
async function recordFailure(deps: { db: Database; events: EventBus }, a: FailedExecution, err: unknown): Promise<{ superseded: true }> {
  const { runId, key, generation, pipelineId } = a.job.data;
  const { attempt, job } = a;
  const final = err instanceof NonRetryableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  // Redacted before cut (lib/redact.ts): a cut first could leave half a secret.
  const message = redact(errorMessage(err), { max: 4_000 });
  const stack = err instanceof Error && err.stack ? redact(err.stack, { max: 16_000 }) : null;
  let recorded: boolean;
  try {
    recorded = await withDbRetry(() => stepState.failStep(deps.db.pool, { runId, key, generation, attempt, error: message, stack, final }));
  } catch (dbErr) {
    // Unrecorded, the failure must not let the flow move on: BullMQ retries the job
    // (or fails it, and with it the run's flow, which the reconciler rebuilds).
    a.log.error({ err: String(dbErr) }, 'could not record step failure');
    throw new Error(message, { cause: dbErr });
  }
  if (!recorded) return { superseded: true };
  a.log.warn({ final, error: message }, final ? 'step failed' : 'step attempt failed; will retry');
  deps.events.step(runId, pipelineId, key, final ? 'failed' : 'pending', attempt);
  if (final) deps.events.run(runId, pipelineId, 'failed');
  if (final) throw new UnrecoverableError(message);
  // The delay is chosen here so the event log can say it; the backoff strategy (flow.ts
  // `backoffDelay`) reads `plannedDelayMs` off this error and uses exactly that.
  const retryAfterMs = (err as { retryAfterMs?: number }).retryAfterMs;
  // The same fallback as the worker's backoff strategy, for jobs queued by an older build.
  const delayMs = backoffDelay(job.attemptsMade + 1, job.data.retry ?? { baseMs: 1_000, maxMs: 60_000 }, { retryAfterMs });
  a.telemetry?.event('retry', `attempt ${attempt} failed; the step runs again in ${(delayMs / 1000).toFixed(1)} s: ${message.slice(0, 300)}`, {
    reason: message.slice(0, 300), delayMs, ...(typeof retryAfterMs === 'number' ? { retryAfterMs } : {}),
  });
  const toThrow = new Error(message) as Error & { retryAfterMs?: number; plannedDelayMs?: number };
  toThrow.retryAfterMs = retryAfterMs;
  toThrow.plannedDelayMs = delayMs;
  throw toThrow;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
}
