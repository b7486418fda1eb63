import type { Redis } from 'ioredis';
import type { Database } from '../db/client';
import type { Services } from '../steps/services';
import { createEngine, type Engine } from '../workflows/engine/engine';
import type { Registry } from '../workflows/engine/define';
import { startWorkerRuntime, type WorkerRuntime } from '../worker/worker';
import { REDIS_URL, silentLog, uid } from './helpers';

/**
 * An in-process worker and an engine on a queue of their own, for end-to-end tests of
 * pipelines; `stop` ends both, closes the services and deletes the test's `cache:<prefix>:*`.
 */
export interface Platform {
  worker: WorkerRuntime;
  engine: Engine;
  queueName: string;
  stop(): Promise<void>;
}

export async function startPlatform(a: { db: Database; redis: Redis; services: Services; registry: Registry; cachePrefix: string }): Promise<Platform> {
  const queueName = uid('q');
  const worker = await startWorkerRuntime({ db: a.db, redisUrl: REDIS_URL, queueName, registry: a.registry, services: a.services, log: silentLog });
  const engine = createEngine({ db: a.db, redis: a.redis, queueName, registry: a.registry, log: silentLog });
  return {
    worker, engine, queueName,
    async stop() {
      await worker.close(1_000);
      await engine.queue.obliterate({ force: true }).catch(() => {});
      await engine.close();
      await a.services.close();
      const keys = await a.redis.keys(`cache:${a.cachePrefix}:*`);
      if (keys.length) await a.redis.del(...keys);
    },
  };
}
