import { randomUUID } from 'node:crypto';
import { getPipelines, type PipelineRow } from '../../db/pipelines';
import * as runs from '../../db/runs';
import type { Actor, Trigger } from '../../db/schema';
import { ConflictError, NotFoundError } from '../../lib/errors';
import type { WorkflowDef } from './define';
import { unknownWorkflow, type EngineContext } from './engine-context';
import { buildFlow } from './flow';

/**
 * Starting runs: insert the run and its steps (one statement), then add its flow. A crash
 * between the two leaves a queued run without jobs, which the reconciler rebuilds.
 */
export interface TriggerOptions {
  trigger?: Trigger;
  params?: Record<string, unknown>;
  scheduledFor?: Date;
  /** Who started the run; kept on it as `triggeredBy`. */
  actor?: Actor;
}

export type TriggerItem = TriggerOptions & { pipelineId: string };
type Planned = { error: ConflictError | NotFoundError } | { p: PipelineRow; wf: WorkflowDef; run: runs.NewRun };

export function createTriggers(ctx: EngineContext) {
  const { db, queueName, registry, log, flows, events } = ctx;

  async function trigger(pipelineId: string, opts: TriggerOptions = {}): Promise<{ runId: string }> {
    const p = await ctx.pipelineOrThrow(pipelineId, { cached: true });
    const wf = ctx.workflowOf(p);
    const runId = randomUUID();
    await ctx.insertOrConflict({
      id: runId, pipelineId, trigger: opts.trigger ?? 'manual', params: opts.params ?? {}, scheduledFor: opts.scheduledFor ?? null,
      exclusive: p.concurrency !== 'allow', triggeredBy: opts.actor ?? null,
      steps: wf.steps.map((s, i) => ({ key: s.key, position: i, status: 'pending' })),
    });
    events.run(runId, pipelineId, 'queued');
    await ctx.addFlow(runId, 0, p, wf, new Set(wf.steps.map((s) => s.key)));
    return { runId };
  }

  function plan(item: TriggerItem, pipelines: Map<string, PipelineRow>): Planned {
    const p = pipelines.get(item.pipelineId);
    if (!p) return { error: new NotFoundError(`pipeline ${item.pipelineId}`) };
    const wf = registry.get(p.workflow);
    if (!wf) return { error: unknownWorkflow(p) };
    return {
      p, wf,
      run: {
        id: randomUUID(), pipelineId: p.id, trigger: item.trigger ?? 'manual', params: item.params ?? {},
        scheduledFor: item.scheduledFor ?? null, exclusive: p.concurrency !== 'allow', triggeredBy: item.actor ?? null,
        steps: wf.steps.map((s, i) => ({ key: s.key, position: i, status: 'pending' as const })),
      },
    };
  }

  /**
   * Starts many runs at once (the scheduler's tick): one pipeline query, one insert,
   * one Redis round trip for all flows. Per item: the run id, or why it did not start.
   */
  async function triggerMany(items: TriggerItem[]): Promise<({ runId: string } | { error: ConflictError | NotFoundError })[]> {
    const pipelines = new Map((await getPipelines(db.pool, [...new Set(items.map((i) => i.pipelineId))])).map((p) => [p.id, p]));
    const planned = items.map((item) => plan(item, pipelines));
    const ok = planned.filter((x): x is Extract<Planned, { run: runs.NewRun }> => 'run' in x);
    const inserted = await runs.insertRuns(db.pool, ok.map((x) => x.run));
    const started = ok.filter((x) => inserted.has(x.run.id));
    if (started.length) {
      try {
        await flows.addBulk(started.map((x) => buildFlow({
          queueName, runId: x.run.id, generation: 0, pipelineId: x.p.id, workflow: x.wf.id, steps: x.wf.steps,
        })));
      } catch (err) {
        log.error({ runs: started.length, err: String(err) }, 'could not enqueue run flows; the reconciler will retry');
      }
      for (const x of started) events.run(x.run.id, x.p.id, 'queued');
    }
    return planned.map((x) => {
      if (!('run' in x)) return x;
      if (inserted.has(x.run.id)) return { runId: x.run.id };
      return x.run.scheduledFor
        ? { error: new ConflictError('run_active_or_tick_taken', `pipeline ${x.p.id}: a run is active or this tick already has its run`) }
        : { error: new ConflictError('run_active', `pipeline ${x.p.id} already has an active run`) };
    });
  }

  return { trigger, triggerMany };
}
