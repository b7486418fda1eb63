import { loadConfigOrExit } from '../config';
import { createDeps } from '../deps';
import { onShutdown } from '../lib/shutdown';
import { startWorkerRuntime } from './worker';

/** The worker process: config, clients, the worker runtime; SIGTERM hands steps back. */
const config = loadConfigOrExit();
const { log, db, services, pipelines, close } = createDeps(config, 'worker');
const rt = await startWorkerRuntime({
  db, redisUrl: config.REDIS_URL, queueName: config.ETL_QUEUE, registry: pipelines.registry, services, log,
  concurrency: config.WORKER_CONCURRENCY, scheduler: {}, retentionDays: config.CHECKPOINT_RETENTION_DAYS,
  heartbeat: { file: config.WORKER_HEARTBEAT_FILE },
});
log.info({ queue: config.ETL_QUEUE, concurrency: config.WORKER_CONCURRENCY }, 'worker started');

const grace = Number(process.env.SHUTDOWN_GRACE_MS ?? 20_000);
onShutdown(log, async (signal) => {
  log.info({ signal, graceMs: grace }, 'worker shutting down: no new jobs; running steps finish or are handed back');
  await rt.close(grace);
  await close();
}, grace + 15_000);
