import { FlowProducer, Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Database } from '../../db/client';
import { getPipeline, type PipelineRow } from '../../db/pipelines';
import * as runs from '../../db/runs';
import type { Logger } from '../../lib/logger';
import { ConflictError, NotFoundError } from '../../lib/errors';
import type { Registry, WorkflowDef } from './define';
import { createEventBus, type EventBus } from './events';
import { buildFlow, rootJobId } from './flow';

/**
 * What every engine action shares: the clients, the pipeline lookup and the two flow
 * moves (add the flow of the steps still to run; drop an old generation's flow). The
 * actions themselves live in trigger.ts, operator.ts and rebuild.ts.
 */
export interface EngineDeps {
  db: Database;
  redis: Redis;
  queueName: string;
  registry: Registry;
  log: Logger;
}

export type EngineContext = ReturnType<typeof createEngineContext>;

export function createEngineContext(deps: EngineDeps) {
  const { db, queueName, registry, log } = deps;
  const flows = new FlowProducer({ connection: deps.redis });
  const queue = new Queue(queueName, { connection: deps.redis });
  const events: EventBus = createEventBus(deps.redis, queueName);
  flows.on('error', () => {});
  queue.on('error', () => {});

  function workflowOf(p: PipelineRow): WorkflowDef {
    const wf = registry.get(p.workflow);
    if (!wf) throw unknownWorkflow(p);
    return wf;
  }

  // Triggers only need a pipeline's workflow and concurrency policy, which change rarely:
  // a one-second cache saves a round trip on the hot path.
  const cache = new Map<string, { row: PipelineRow; at: number }>();
  async function pipelineOrThrow(id: string, opts: { cached?: boolean } = {}): Promise<PipelineRow> {
    const hit = opts.cached ? cache.get(id) : undefined;
    if (hit && Date.now() - hit.at < 1_000) return hit.row;
    const p = await getPipeline(db.pool, id);
    if (!p) throw new NotFoundError(`pipeline ${id}`);
    if (cache.size > 10_000) cache.clear();
    cache.set(id, { row: p, at: Date.now() });
    return p;
  }

  /** Adds the flow for the steps still to run; failure is logged, the reconciler retries. */
  async function addFlow(runId: string, generation: number, p: PipelineRow, wf: WorkflowDef, todo: ReadonlySet<string>) {
    const steps = wf.steps.filter((s) => todo.has(s.key));
    if (steps.length === 0) {
      // Every step already succeeded (e.g. the run's jobs were lost right after the last
      // step): nothing to enqueue, just finish the run.
      if (await runs.finishRun(db.pool, { runId, generation })) events.run(runId, p.id, 'succeeded');
      return;
    }
    try {
      await flows.add(buildFlow({ queueName, runId, generation, pipelineId: p.id, workflow: wf.id, steps }));
    } catch (err) {
      log.error({ runId, pipelineId: p.id, err: String(err) }, 'could not enqueue run flow; the reconciler will retry');
    }
  }

  async function insertOrConflict(run: runs.NewRun) {
    try {
      await runs.insertRun(db.pool, run);
    } catch (err) {
      throw mapUniqueViolation(err, run.pipelineId);
    }
  }

  /** Removes an old generation's jobs; a locked (active) job keeps them, and is fenced. */
  async function dropFlow(runId: string, generation: number) {
    try {
      const job = await Job.fromId(queue, rootJobId(runId, generation));
      await job?.remove();
    } catch (err) {
      log.debug({ runId, err: String(err) }, 'old flow not removed (a job is still locked); it is fenced by generation');
    }
  }

  return {
    ...deps, flows, queue, events, workflowOf, pipelineOrThrow, addFlow, insertOrConflict, dropFlow,
    async close() {
      await Promise.allSettled([flows.close(), queue.close()]);
    },
  };
}

/** Keys of the steps a rebuilt flow must contain: every step not yet succeeded. */
export function stepsToRun(state: runs.RunState): Set<string> {
  return new Set(state.steps.filter((s) => s.status !== 'succeeded' && s.status !== 'skipped').map((s) => s.key));
}

export function unknownWorkflow(p: PipelineRow): ConflictError {
  return new ConflictError('unknown_workflow', `pipeline ${p.id} names workflow ${p.workflow}, which this build does not have`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Run ids are UUIDs; anything else names no run (and must not reach SQL as a uuid). */
export function assertRunId(runId: string): void {
  if (!UUID.test(runId)) throw new NotFoundError(`run ${runId.slice(0, 80)}`);
}

export function mapUniqueViolation(err: unknown, pipelineId: string): unknown {
  const e = err as { code?: string; constraint?: string };
  if (e.code === '23505' && e.constraint === 'etl_runs_one_active_uq') {
    return new ConflictError('run_active', `pipeline ${pipelineId} already has an active run`);
  }
  if (e.code === '23505' && e.constraint === 'etl_runs_schedule_tick_uq') {
    return new ConflictError('tick_taken', `this tick of pipeline ${pipelineId} already has a run`);
  }
  return err;
}
