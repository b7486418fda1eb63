import { randomUUID } from 'node:crypto';
import * as runs from '../../db/runs';
import * as stepState from '../../db/steps';
import type { Actor } from '../../db/schema';
import { withTransaction } from '../../db/tx';
import { ConflictError, NotFoundError } from '../../lib/errors';
import { bulkResume, type BulkResumeFilter } from './bulk-resume';
import { cancelChannel } from './events';
import { assertRunId, mapUniqueViolation, stepsToRun, type EngineContext } from './engine-context';

/**
 * Operator actions on runs: retry a step, resume, rerun from a step, cancel. Postgres is
 * changed first, in one guarded statement or a transaction holding the run's row lock;
 * the BullMQ flow is (re)built after. A crash between the two leaves a queued run without
 * jobs, which the reconciler rebuilds.
 */
export function createOperator(ctx: EngineContext) {
  return {
    retryStep: (runId: string, key: string, opts?: RequeueOptions) => retryStep(ctx, runId, key, opts),
    resume: (runId: string, opts?: RequeueOptions) => resume(ctx, runId, opts),
    rerunFrom: (runId: string, fromKey: string, params?: Record<string, unknown>, actor?: Actor) => rerunFrom(ctx, runId, fromKey, params, actor),
    cancel: (runId: string, reason?: string) => cancel(ctx, runId, reason),
    bulkResume: (f: BulkResumeFilter) => bulkResume(ctx, (runId) => resume(ctx, runId), f),
  };
}

export interface RequeueOptions {
  /** Resume or retry even when a newer run of the pipeline succeeded (SPEC §13). */
  force?: boolean;
}

/** Re-runs one failed step; the steps after it follow. Earlier steps are not re-run. */
async function retryStep(ctx: EngineContext, runId: string, key: string, opts: RequeueOptions = {}): Promise<{ runId: string }> {
  assertRunId(runId);
  return requeue(ctx, runId, opts, (state) => {
    const step = state.steps.find((s) => s.key === key);
    if (!step) throw new NotFoundError(`step ${key} of run ${runId}`);
    if (step.status !== 'failed') {
      throw new ConflictError('step_not_failed', `step ${key} is ${step.status}; only a failed step can be retried`);
    }
  });
}

/** Re-runs every step not yet succeeded, reading the succeeded steps' checkpoints. */
async function resume(ctx: EngineContext, runId: string, opts: RequeueOptions = {}): Promise<{ runId: string }> {
  assertRunId(runId);
  return requeue(ctx, runId, opts, (state) => {
    if (state.status === 'succeeded') throw new ConflictError('run_succeeded', 'the run already succeeded');
  });
}

/**
 * Retry and resume: under the run's row lock, check the state, bump the generation and set
 * every not-succeeded step to pending; then drop the old flow (best effort) and add a new
 * one, on the new generation, with only those steps. A run older than the pipeline's
 * newest success is refused unless forced: it would publish old data over fresh.
 */
async function requeue(ctx: EngineContext, runId: string, opts: RequeueOptions, check: (s: runs.RunState) => void): Promise<{ runId: string }> {
  const { state, next } = await withTransaction(ctx.db.pool, async (client) => {
    const state = await runs.getRunState(client, runId, { forUpdate: true });
    if (!state) throw new NotFoundError(`run ${runId}`);
    check(state);
    if (state.status === 'queued' || state.status === 'running') {
      throw new ConflictError('run_active', `the run is ${state.status}`);
    }
    const newer = opts.force ? null : await runs.supersededBy(client, runId);
    if (newer) {
      throw new ConflictError('superseded', `run ${newer} of ${state.pipelineId} succeeded after this run was created; resuming it would publish older data over newer (send "force": true to do it anyway)`, { supersededBy: newer });
    }
    const next = await runs.requeueRun(client, runId, state.generation).catch((err) => {
      throw mapUniqueViolation(err, state.pipelineId);
    });
    return { state, next };
  });
  const p = await ctx.pipelineOrThrow(state.pipelineId);
  ctx.events.run(runId, p.id, 'queued');
  await ctx.dropFlow(runId, state.generation);
  await ctx.addFlow(runId, next, p, ctx.workflowOf(p), stepsToRun(state));
  return { runId };
}

/** A new run of the same pipeline that reuses this run's checkpoints before `fromKey`. */
async function rerunFrom(ctx: EngineContext, runId: string, fromKey: string, params?: Record<string, unknown>, actor?: Actor): Promise<{ runId: string }> {
  const { db } = ctx;
  assertRunId(runId);
  const src = await runs.getRunState(db.pool, runId);
  if (!src) throw new NotFoundError(`run ${runId}`);
  const from = src.steps.find((s) => s.key === fromKey);
  if (!from) throw new NotFoundError(`step ${fromKey} of run ${runId}`);
  const p = await ctx.pipelineOrThrow(src.pipelineId);
  const wf = ctx.workflowOf(p);
  const before = src.steps.filter((s) => s.position < from.position);
  const missing = before.find((s) => s.status !== 'succeeded');
  if (missing) {
    throw new ConflictError('checkpoint_missing', `step ${missing.key} did not succeed in run ${runId}, so there is no checkpoint to rerun from`);
  }
  const reused = await stepState.stepOutputs(db.pool, runId);
  const newId = randomUUID();
  await ctx.insertOrConflict({
    id: newId, pipelineId: p.id, trigger: 'rerun', params: params ?? (await runs.runParams(db.pool, runId)), parentRunId: runId,
    exclusive: p.concurrency !== 'allow', triggeredBy: actor ?? null,
    steps: wf.steps.map((s, i) => {
      const old = before.find((b) => b.key === s.key);
      const out = reused.get(s.key);
      return old && out
        ? { key: s.key, position: i, status: 'succeeded' as const, output: out.output, rowsIn: out.rowsIn, rowsOut: out.rowsOut,
            startedAt: out.startedAt, finishedAt: out.finishedAt }
        : { key: s.key, position: i, status: 'pending' as const };
    }),
  });
  ctx.events.run(newId, p.id, 'queued');
  await ctx.addFlow(newId, 0, p, wf, new Set(wf.steps.filter((s) => !before.some((b) => b.key === s.key)).map((s) => s.key)));
  return { runId: newId };
}

/** Cancels a queued or running run; the running step's AbortSignal fires wherever it runs. */
async function cancel(ctx: EngineContext, runId: string, reason = 'cancelled by operator'): Promise<{ runId: string }> {
  assertRunId(runId);
  const r = await runs.cancelRun(ctx.db.pool, runId, reason);
  if (!r) {
    const state = await runs.getRunState(ctx.db.pool, runId);
    if (!state) throw new NotFoundError(`run ${runId}`);
    throw new ConflictError('run_finished', `the run is ${state.status}; only a queued or running run can be cancelled`);
  }
  await ctx.redis.publish(cancelChannel(ctx.queueName), runId).catch(() => 0);
  ctx.events.run(runId, r.pipelineId, 'cancelled');
  return { runId };
}
