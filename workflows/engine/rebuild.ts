import * as runs from '../../db/runs';
import { stepsToRun, type EngineContext } from './engine-context';

/**
 * Rebuilds the flow of an active run whose jobs were lost (used by the reconciler): on a
 * new generation, so no job id of the lost flow is reused, with only the steps not yet
 * succeeded. A stale call (the run moved on, or finished) does nothing.
 */
export function createRebuild(ctx: EngineContext) {
  const { db, log } = ctx;
  return async function rebuild(runId: string, generation: number): Promise<void> {
    const state = await runs.getRunState(db.pool, runId);
    if (!state || state.generation !== generation || !['queued', 'running'].includes(state.status)) return;
    const p = await ctx.pipelineOrThrow(state.pipelineId);
    const wf = ctx.workflowOf(p);
    const next = await runs.requeueRun(db.pool, runId, generation);
    await ctx.dropFlow(runId, generation);
    await ctx.addFlow(runId, next, p, wf, stepsToRun(state));
    log.warn({ runId, pipelineId: p.id, generation: next }, 'rebuilt the flow of a run whose jobs were lost');
  };
}
