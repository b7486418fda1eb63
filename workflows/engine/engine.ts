import { randomUUID } from 'node:crypto';
import { FlowProducer, Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Database } from '../../db/client';
import { getPipeline, getPipelines, type PipelineRow } from '../../db/pipelines';
import * as runs from '../../db/runs';
import type { Actor, Trigger } from '../../db/schema';
import type { Logger } from '../../lib/logger';
import { ConflictError, NotFoundError } from '../../steps/errors';
import type { Registry, WorkflowDef } from './define';
import { cancelChannel, createEventBus, type EventBus } from './events';
import { buildFlow, rootJobId } from './flow';

/**
 * Operator actions on runs. Postgres is changed first, in one guarded statement or
 * transaction; the BullMQ flow is (re)built after. A crash between the two leaves a
 * queued run without jobs, which the reconciler rebuilds.
 */
export interface EngineDeps {
  db: Database;
  redis: Redis;
  queueName: string;
  registry: Registry;
  log: Logger;
}

export interface TriggerOptions {
  trigger?: Trigger;
  params?: Record<string, unknown>;
  scheduledFor?: Date;
  /** Who started the run; kept on it as `triggeredBy`. */
  actor?: Actor;
}

export type Engine = ReturnType<typeof createEngine>;

export function createEngine(deps: EngineDeps) {
  const { db, redis, queueName, registry, log } = deps;
  const flows = new FlowProducer({ connection: redis });
  const queue = new Queue(queueName, { connection: redis });
  const events: EventBus = createEventBus(redis, queueName);
  flows.on('error', () => {});
  queue.on('error', () => {});

  function workflowOf(p: PipelineRow): WorkflowDef {
    const wf = registry.get(p.workflow);
    if (!wf) throw new ConflictError('unknown_workflow', `pipeline ${p.id} names workflow ${p.workflow}, which this build does not have`);
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
    queue,
    events,

    async trigger(pipelineId: string, opts: TriggerOptions = {}): Promise<{ runId: string }> {
      const p = await pipelineOrThrow(pipelineId, { cached: true });
      const wf = workflowOf(p);
      const runId = randomUUID();
      await insertOrConflict({
        id: runId, pipelineId, trigger: opts.trigger ?? 'manual', params: opts.params ?? {}, scheduledFor: opts.scheduledFor ?? null,
        exclusive: p.concurrency !== 'allow', triggeredBy: opts.actor ?? null,
        steps: wf.steps.map((s, i) => ({ key: s.key, position: i, status: 'pending' })),
      });
      events.run(runId, pipelineId, 'queued');
      await addFlow(runId, 0, p, wf, new Set(wf.steps.map((s) => s.key)));
      return { runId };
    },

    /**
     * Starts many runs at once (the scheduler's tick): one pipeline query, one insert,
     * one Redis round trip for all flows. Per item: the run id, or why it did not start.
     */
    async triggerMany(items: { pipelineId: string; trigger?: Trigger; scheduledFor?: Date; params?: Record<string, unknown>; actor?: Actor }[]):
      Promise<({ runId: string } | { error: ConflictError | NotFoundError })[]> {
      const pipelines = new Map((await getPipelines(db.pool, [...new Set(items.map((i) => i.pipelineId))])).map((p) => [p.id, p]));
      type Planned = { error: ConflictError | NotFoundError } | { p: PipelineRow; wf: WorkflowDef; run: runs.NewRun };
      const planned = items.map((item): Planned => {
        const p = pipelines.get(item.pipelineId);
        if (!p) return { error: new NotFoundError(`pipeline ${item.pipelineId}`) };
        const wf = registry.get(p.workflow);
        if (!wf) return { error: new ConflictError('unknown_workflow', `pipeline ${p.id} names workflow ${p.workflow}, which this build does not have`) };
        return {
          p, wf,
          run: {
            id: randomUUID(), pipelineId: p.id, trigger: item.trigger ?? 'manual', params: item.params ?? {},
            scheduledFor: item.scheduledFor ?? null, exclusive: p.concurrency !== 'allow', triggeredBy: item.actor ?? null,
            steps: wf.steps.map((s, i) => ({ key: s.key, position: i, status: 'pending' as const })),
          },
        };
      });
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
    },

    /** Re-runs one failed step; the steps after it follow. Earlier steps are not re-run. */
    async retryStep(runId: string, key: string): Promise<{ runId: string }> {
      assertRunId(runId);
      return requeue(runId, (state) => {
        const step = state.steps.find((s) => s.key === key);
        if (!step) throw new NotFoundError(`step ${key} of run ${runId}`);
        if (step.status !== 'failed') {
          throw new ConflictError('step_not_failed', `step ${key} is ${step.status}; only a failed step can be retried`);
        }
      });
    },

    /** Re-runs every step not yet succeeded, reading the succeeded steps' checkpoints. */
    async resume(runId: string): Promise<{ runId: string }> {
      assertRunId(runId);
      return requeue(runId, (state) => {
        if (state.status === 'succeeded') throw new ConflictError('run_succeeded', 'the run already succeeded');
      });
    },

    /** A new run of the same pipeline that reuses this run's checkpoints before `fromKey`. */
    async rerunFrom(runId: string, fromKey: string, params?: Record<string, unknown>, actor?: Actor): Promise<{ runId: string }> {
      assertRunId(runId);
      const src = await runs.getRunState(db.pool, runId);
      if (!src) throw new NotFoundError(`run ${runId}`);
      const from = src.steps.find((s) => s.key === fromKey);
      if (!from) throw new NotFoundError(`step ${fromKey} of run ${runId}`);
      const p = await pipelineOrThrow(src.pipelineId);
      const wf = workflowOf(p);
      const before = src.steps.filter((s) => s.position < from.position);
      const missing = before.find((s) => s.status !== 'succeeded');
      if (missing) {
        throw new ConflictError('checkpoint_missing', `step ${missing.key} did not succeed in run ${runId}, so there is no checkpoint to rerun from`);
      }
      const reused = await runs.stepOutputs(db.pool, runId);
      const newId = randomUUID();
      await insertOrConflict({
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
      events.run(newId, p.id, 'queued');
      await addFlow(newId, 0, p, wf, new Set(wf.steps.filter((s) => !before.some((b) => b.key === s.key)).map((s) => s.key)));
      return { runId: newId };
    },

    /** Cancels a queued or running run; the running step's AbortSignal fires wherever it runs. */
    async cancel(runId: string, reason = 'cancelled by operator'): Promise<{ runId: string }> {
      assertRunId(runId);
      const r = await runs.cancelRun(db.pool, runId, reason);
      if (!r) {
        const state = await runs.getRunState(db.pool, runId);
        if (!state) throw new NotFoundError(`run ${runId}`);
        throw new ConflictError('run_finished', `the run is ${state.status}; only a queued or running run can be cancelled`);
      }
      await redis.publish(cancelChannel(queueName), runId).catch(() => 0);
      events.run(runId, r.pipelineId, 'cancelled');
      return { runId };
    },

    /** Rebuilds the flow of an active run whose jobs were lost (used by the reconciler). */
    async rebuild(runId: string, generation: number): Promise<void> {
      const state = await runs.getRunState(db.pool, runId);
      if (!state || state.generation !== generation || !['queued', 'running'].includes(state.status)) return;
      const p = await pipelineOrThrow(state.pipelineId);
      const wf = workflowOf(p);
      const next = await runs.requeueRun(db.pool, runId, generation);
      await dropFlow(runId, generation);
      await addFlow(runId, next, p, wf, new Set(state.steps.filter((s) => s.status !== 'succeeded' && s.status !== 'skipped').map((s) => s.key)));
      log.warn({ runId, pipelineId: p.id, generation: next }, 'rebuilt the flow of a run whose jobs were lost');
    },

    async close() {
      await Promise.allSettled([flows.close(), queue.close()]);
    },
  };

  async function requeue(runId: string, check: (s: runs.RunState) => void): Promise<{ runId: string }> {
    const client = await db.pool.connect();
    let state: runs.RunState | null;
    let next: number;
    try {
      await client.query('begin');
      state = await runs.getRunState(client, runId, { forUpdate: true });
      if (!state) throw new NotFoundError(`run ${runId}`);
      check(state);
      if (state.status === 'queued' || state.status === 'running') {
        throw new ConflictError('run_active', `the run is ${state.status}`);
      }
      next = await runs.requeueRun(client, runId, state.generation).catch((err) => {
        throw mapUniqueViolation(err, state!.pipelineId);
      });
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
    const p = await pipelineOrThrow(state.pipelineId);
    events.run(runId, p.id, 'queued');
    await dropFlow(runId, state.generation);
    await addFlow(runId, next, p, workflowOf(p), new Set(state.steps.filter((s) => s.status !== 'succeeded' && s.status !== 'skipped').map((s) => s.key)));
    return { runId };
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Run ids are UUIDs; anything else names no run (and must not reach SQL as a uuid). */
function assertRunId(runId: string): void {
  if (!UUID.test(runId)) throw new NotFoundError(`run ${runId.slice(0, 80)}`);
}

function mapUniqueViolation(err: unknown, pipelineId: string): unknown {
  const e = err as { code?: string; constraint?: string };
  if (e.code === '23505' && e.constraint === 'etl_runs_one_active_uq') {
    return new ConflictError('run_active', `pipeline ${pipelineId} already has an active run`);
  }
  if (e.code === '23505' && e.constraint === 'etl_runs_schedule_tick_uq') {
    return new ConflictError('tick_taken', `this tick of pipeline ${pipelineId} already has a run`);
  }
  return err;
}
