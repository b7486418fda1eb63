import { Redis } from 'ioredis';
import { loadConfigOrExit } from '../config';
import { createDatabase } from '../db/client';
import { createLogger } from '../lib/logger';
import { createServices } from '../steps/services';
import { defaultRegistry } from '../workflows';
import { startWorkerRuntime } from './worker';

/** The worker process: config, clients, the worker runtime; SIGTERM hands steps back. */
const config = loadConfigOrExit();
const log = createLogger({ level: config.LOG_LEVEL, name: 'worker' });
const db = createDatabase(config.DATABASE_URL, { max: 8, applicationName: 'etl-worker' });
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
const services = createServices({ config, db, redis, log });
const rt = await startWorkerRuntime({
  db, redisUrl: config.REDIS_URL, queueName: config.ETL_QUEUE, registry: defaultRegistry(), services, log,
  concurrency: config.WORKER_CONCURRENCY, scheduler: {}, retentionDays: config.CHECKPOINT_RETENTION_DAYS,
  heartbeat: { file: config.WORKER_HEARTBEAT_FILE },
});
log.info({ queue: config.ETL_QUEUE, concurrency: config.WORKER_CONCURRENCY }, 'worker started');

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'worker shutting down: no new jobs; running steps get 20 s, then are handed back');
  await rt.close(Number(process.env.SHUTDOWN_GRACE_MS ?? 20_000));
  await services.close();
  await db.close();
  redis.disconnect();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
