import type { Queue } from 'bullmq';
import type { Database } from '../db/client';
import { purgeExpiredBlobs } from '../db/blobs';
import * as runs from '../db/runs';
import * as stepState from '../db/steps';
import { purgeTicks } from '../db/schedule';
import { LOCKS, withTryXactLock } from '../db/tx';
import type { Logger } from '../lib/logger';
import type { Engine } from '../workflows/engine/engine';
import { rootJobId } from '../workflows/engine/flow';

/**
 * Brings Postgres (the truth) and BullMQ (the transport) back into agreement after a
 * crash, a Redis flush or a lost write: an active run whose flow is gone is rebuilt on a
 * new generation; a step Postgres calls running whose job failed is recorded as failed.
 * One replica at a time does a pass (a transaction-scoped advisory lock).
 */
export interface ReconcilerDeps {
  db: Database;
  queue: Queue;
  engine: Pick<Engine, 'rebuild'>;
  log: Logger;
  /** A run younger than this may not have its flow yet (created, enqueue in flight). */
  graceMs?: number;
  /** Staged step data of runs finished this many days ago is deleted (checkpoint retention). */
  retentionDays?: number;
  /** The tick log is kept this many days. */
  tickRetentionDays?: number;
}

export async function reconcileOnce(deps: ReconcilerDeps): Promise<{ rebuilt: number; failed: number } | null> {
  // The lock's transaction only serialises passes: the repairs go through the pool, each
  // its own guarded statement, so nothing here needs to roll back together.
  return withTryXactLock(deps.db.pool, LOCKS.reconcile, async () => {
    const { rebuilt, failed } = await repairRuns(deps);
    if (rebuilt || failed) deps.log.warn({ rebuilt, failed }, 'reconciler repaired runs');
    // Retention, under the same lock so one replica does it.
    const purged = await purgeExpiredBlobs(deps.db.pool, deps.retentionDays ?? 14);
    const ticks = await purgeTicks(deps.db.pool, deps.tickRetentionDays ?? 30);
    if (purged || ticks) deps.log.info({ stagedChunks: purged, ticks }, 'retention: deleted expired checkpoints and tick log rows');
    return { rebuilt, failed };
  });
}

async function repairRuns(deps: ReconcilerDeps): Promise<{ rebuilt: number; failed: number }> {
  const { db, queue, engine } = deps;
  let rebuilt = 0;
  let failed = 0;
  for (const run of await runs.listActiveRuns(db.pool, deps.graceMs ?? 10_000)) {
    const root = await queue.getJob(rootJobId(run.id, run.generation));
    // No flow, or a flow that ended while Postgres still calls the run active (a step
    // job that found its step fenced off did nothing): rebuild from Postgres.
    const rootState = root ? await root.getState() : 'missing';
    if (rootState === 'missing' || rootState === 'completed' || rootState === 'failed') {
      await engine.rebuild(run.id, run.generation);
      rebuilt++;
      continue;
    }
    const state = await runs.getRunState(db.pool, run.id);
    for (const step of state?.steps ?? []) {
      if (step.status !== 'running' || !step.jobId) continue;
      const job = await queue.getJob(step.jobId);
      const jobState = job ? await job.getState() : 'missing';
      if (jobState === 'failed') {
        const ok = await stepState.failStep(db.pool, {
          runId: run.id, key: step.key, generation: run.generation, attempt: step.attempts,
          error: job?.failedReason || 'the step job failed', stack: null, final: true,
        });
        if (ok) failed++;
      } else if (jobState === 'missing' || jobState === 'completed') {
        await engine.rebuild(run.id, run.generation);
        rebuilt++;
        break;
      }
    }
  }
  return { rebuilt, failed };
}

export function startReconciler(deps: ReconcilerDeps & { intervalMs?: number }): { stop(): Promise<void>; lastPassAt(): number } {
  let running: Promise<unknown> = Promise.resolve();
  // When a pass last finished, successful or not (the heartbeat's "reconciler alive").
  let lastPassAt = Date.now();
  const tick = () => {
    running = reconcileOnce(deps)
      .catch((err) => deps.log.warn({ err: String(err) }, 'reconciler pass failed; will retry'))
      .finally(() => (lastPassAt = Date.now()));
  };
  const timer = setInterval(tick, deps.intervalMs ?? 15_000);
  timer.unref();
  tick();
  return {
    lastPassAt: () => lastPassAt,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
