import { Redis } from 'ioredis';
import { loadConfig } from '../config';
import { createDatabase } from '../db/client';
import { createLogger } from '../lib/logger';
import { createServices } from '../steps/services';
import { createRegistry } from '../workflows/engine/define';
import { startWorkerRuntime } from '../worker/worker';
import { benchQueryWorkflow, benchQuietWorkflow, benchSequentialWorkflow } from './pipeline-workflow';

/** A worker process for bench/pipeline.ts, so its peak RSS is the worker's alone. */
const env = process.env as Record<string, string>;
const config = loadConfig({ DATABASE_URL: env.DATABASE_URL, REDIS_URL: env.REDIS_URL, CLICKHOUSE_URL: env.CLICKHOUSE_URL });
const db = createDatabase(config.DATABASE_URL, { max: 8 }); // as worker/main.ts
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
const log = createLogger({ level: 'warn' });
const services = createServices({ config, db, redis, log, env: { ETL_CRED_CLICKHOUSE: '{"username":"default","password":""}' } });
const rt = await startWorkerRuntime({
  db, redisUrl: config.REDIS_URL, queueName: env.QUEUE, registry: createRegistry([benchQueryWorkflow, benchQuietWorkflow, benchSequentialWorkflow]), services, log, concurrency: Number(env.WORKER_CONCURRENCY ?? 8),
});
process.stdout.write('ready\n');
async function shutdown() {
  await rt.close(1_000);
  await services.close();
  await db.close();
  redis.disconnect();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown()); // fire-and-forget: shutdown ends the process
