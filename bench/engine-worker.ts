import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { createDatabase } from '../db/client';
import { createLogger } from '../lib/logger';
import { createRegistry } from '../workflows/engine/define';
import { startWorkerRuntime } from '../worker/worker';
import { benchWorkflow } from './engine-workflow';

/**
 * The worker side of bench/engine.ts in its own process, as in production (api and worker
 * are separate processes). MODE=engine runs the engine's worker runtime; MODE=raw a bare
 * BullMQ worker that publishes the root job's completion on pub/sub, the same signal the
 * engine gives, so both are observed the same way.
 */
const { MODE, REDIS_URL, DATABASE_URL, QUEUE, DONE_CHANNEL } = process.env as Record<string, string>;
const concurrency = 32;
let close: () => Promise<void>;
if (MODE === 'engine') {
  const db = createDatabase(DATABASE_URL, { max: 16 });
  const rt = await startWorkerRuntime({
    db, redisUrl: REDIS_URL, queueName: QUEUE, registry: createRegistry([benchWorkflow]), services: {},
    log: createLogger({ level: 'silent' }), concurrency,
  });
  close = async () => {
    await rt.close(1_000);
    await db.close();
  };
} else {
  const pub = new Redis(REDIS_URL);
  const worker = new Worker(QUEUE, async (job) => {
    if (job.name === 'run') await pub.publish(DONE_CHANNEL, job.id!);
    return { ok: true };
  }, { connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null }), concurrency });
  close = async () => {
    await worker.close();
    pub.disconnect();
  };
}
process.stdout.write('ready\n');
async function shutdown() {
  await close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown()); // fire-and-forget: shutdown ends the process
