import { createEngineContext, type EngineDeps } from './engine-context';
import { createOperator } from './operator';
import { createRebuild } from './rebuild';
import { createTriggers } from './trigger';

/**
 * The engine's actions on runs, wired from one shared context (clients, pipeline lookup,
 * flow add/drop): trigger.ts starts runs, operator.ts retries, resumes, reruns and
 * cancels them, rebuild.ts rebuilds a lost flow for the reconciler. Each changes Postgres
 * first and the BullMQ flow after; a crash between the two leaves a queued run without
 * jobs, which the reconciler rebuilds.
 */
export type { EngineDeps } from './engine-context';
export type { TriggerOptions } from './trigger';

export type Engine = ReturnType<typeof createEngine>;

export function createEngine(deps: EngineDeps) {
  const ctx = createEngineContext(deps);
  return {
    queue: ctx.queue,
    events: ctx.events,
    ...createTriggers(ctx),
    ...createOperator(ctx),
    rebuild: createRebuild(ctx),
    close: () => ctx.close(),
  };
}
