import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Database } from '../db/client';
import { cancelledAmong } from '../db/runs';
import type { Logger } from '../lib/logger';
import { StepAbortedError } from '../lib/errors';
import { forgetWorker } from '../lib/worker-presence';
import type { Registry } from '../workflows/engine/define';
import { createEngine, type Engine } from '../workflows/engine/engine';
import { cancelChannel } from '../workflows/engine/events';
import { backoffDelay, type StepJobData } from '../workflows/engine/flow';
import { createGroupCommit } from '../workflows/engine/group-commit';
import { ActiveSteps, createRunner } from '../workflows/engine/runner';
import { startAlertSender, type AlertSenderOptions } from './alerts-sender';
import { startAlertWatch } from './alerts-watch';
import { startHeartbeat } from './heartbeat';
import { startReconciler } from './reconciler';
import { startScheduler, type SchedulerOptions, type SchedulerStats } from './scheduler';

/**
 * Stall settings: a SIGKILLed worker's step is taken over in ~10–15 s (lock 10 s, checked
 * every 5 s). A crash must never fail a run, so a job may stall many times; Postgres
 * counts real attempts.
 */
export const WORKER_SETTINGS = { lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 1_000 } as const;

export interface WorkerRuntimeOptions {
  db: Database;
  redisUrl: string;
  queueName: string;
  registry: Registry;
  services: unknown;
  log: Logger;
  concurrency?: number;
  reconcileIntervalMs?: number;
  reconcileGraceMs?: number;
  /** Checkpoint retention (CHECKPOINT_RETENTION_DAYS). */
  retentionDays?: number;
  /** How often running steps check Postgres for a cancel they may have missed on pub/sub. */
  cancelPollMs?: number;
  /** Run the cron scheduler in this process (every replica may; ticks are claimed in Postgres). */
  scheduler?: false | Partial<Pick<SchedulerOptions, 'intervalMs' | 'lateMs' | 'retryPendingMs' | 'watchdogMs' | 'now' | 'allowSeconds'>>;
  /** The health heartbeat (worker/heartbeat.ts); `file` is what the container healthcheck reads. */
  heartbeat?: { file?: string; intervalMs?: number };
  /** Tests that kill workers many times shorten the stall settings (default WORKER_SETTINGS). */
  stall?: { lockDuration?: number; stalledInterval?: number };
  /** Alerts (SPEC §12): the outbox sender and the staleness / overdue watch. Off when absent. */
  alerts?: Omit<AlertSenderOptions, 'db' | 'log' | 'workerId'> & { evalMs?: number };
}

export interface WorkerRuntime {
  engine: Engine;
  worker: Worker;
  scheduler?: SchedulerStats;
  /** Stops taking jobs; running steps get `graceMs` to finish, then are handed back. */
  close(graceMs?: number): Promise<void>;
}

export async function startWorkerRuntime(o: WorkerRuntimeOptions): Promise<WorkerRuntime> {
  const workerId = `${hostname()}:${process.pid}`;
  const redisOpts = { maxRetriesPerRequest: null, enableOfflineQueue: true } as const;
  const commands = new Redis(o.redisUrl, redisOpts);
  const subscriber = new Redis(o.redisUrl, redisOpts);
  const blocking = new Redis(o.redisUrl, redisOpts);
  for (const c of [commands, subscriber, blocking]) c.on('error', () => {});

  const engine = createEngine({ db: o.db, redis: commands, queueName: o.queueName, registry: o.registry, log: o.log });
  const active = new ActiveSteps();
  // Concurrent claims and completions share a transaction (one round trip, one commit).
  const group = createGroupCommit({ db: o.db, log: o.log });
  const processJob = createRunner({ db: o.db, registry: o.registry, services: o.services, events: engine.events, log: o.log, workerId, active, group });

  const cancelled = (runId: string) => active.abortRun(runId, new StepAbortedError('the run was cancelled', 'cancelled'));
  await subscriber.subscribe(cancelChannel(o.queueName));
  subscriber.on('message', (_channel, runId: string) => cancelled(runId));
  // Pub/sub is lossy across Redis restarts: also ask Postgres now and then.
  const poll = setInterval(() => {
    if (active.size === 0) return;
    cancelledAmong(o.db.pool, active.runIds()).then((ids) => ids.forEach(cancelled), () => {});
  }, o.cancelPollMs ?? 2_000);
  poll.unref();

  const worker = new Worker(o.queueName, processJob, {
    connection: blocking,
    concurrency: o.concurrency ?? 16,
    ...WORKER_SETTINGS,
    ...o.stall,
    settings: {
      backoffStrategy: (attemptsMade, _type, err, job) =>
        backoffDelay(attemptsMade, (job?.data as StepJobData | undefined)?.retry ?? { baseMs: 1_000, maxMs: 60_000 }, err),
    },
  });
  worker.on('error', (err) => o.log.warn({ err: String(err) }, 'worker error'));

  const reconciler = startReconciler({
    db: o.db, queue: engine.queue, engine, log: o.log, intervalMs: o.reconcileIntervalMs, graceMs: o.reconcileGraceMs,
    retentionDays: o.retentionDays,
  });

  const scheduler = o.scheduler === false || o.scheduler === undefined ? undefined
    : startScheduler({ db: o.db, engine, log: o.log, workerId, ...o.scheduler });

  // Alerts run on their own timers and queries: a slow webhook never holds a step back.
  const alertSender = o.alerts && startAlertSender({ db: o.db, log: o.log, workerId, ...o.alerts });
  const alertWatch = o.alerts && startAlertWatch({ db: o.db, redis: commands, log: o.log, intervalMs: o.alerts.evalMs });

  const reconcileEvery = o.reconcileIntervalMs ?? 15_000;
  const heartbeat = o.heartbeat && startHeartbeat({
    queueName: o.queueName, workerId, log: o.log, file: o.heartbeat.file, intervalMs: o.heartbeat.intervalMs,
    // `blocking` is the connection the BullMQ worker was given (it duplicates it for BZPOPMIN).
    redis: [commands, blocking], workerRunning: () => worker.isRunning(),
    schedulerAt: scheduler && (() => scheduler.stats.lastLoopAt),
    reconcilerAt: () => reconciler.lastPassAt(), reconcilerMaxAgeMs: 2 * reconcileEvery + 60_000,
    activeSteps: () => active.size,
  });

  return {
    engine,
    worker,
    scheduler: scheduler?.stats,
    async close(graceMs = 20_000) {
      clearInterval(poll);
      await heartbeat?.stop();
      if (heartbeat) await forgetWorker(commands, o.queueName, workerId).catch(() => {});
      await scheduler?.stop();
      await reconciler.stop();
      await Promise.all([alertSender?.stop(), alertWatch?.stop()]);
      const closing = worker.close();
      const timer = setTimeout(() => active.abortAll(new StepAbortedError('the worker is shutting down', 'shutdown')), graceMs);
      await closing;
      clearTimeout(timer);
      await group.close();
      await engine.close();
      await Promise.allSettled([commands.quit(), subscriber.quit(), blocking.quit()]);
    },
  };
}
