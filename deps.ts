import { Redis } from 'ioredis';
import type { Config } from './config';
import { createDatabase, type Database } from './db/client';
import { createLogger, type Logger } from './lib/logger';
import { createServices, type Services } from './steps/services';
import { shipped } from './workflows/index';
import type { Pipelines } from './workflows/registry';

/**
 * The clients both entry points build from a parsed config, in one place. Nothing here
 * runs at import; `createDeps` opens the connections and `close` ends them, in reverse.
 */
export interface Deps {
  config: Config;
  log: Logger;
  db: Database;
  /** Commands on this connection fail fast while Redis is away in the api (a request
   *  errors, not hangs) and wait in the worker (BullMQ needs maxRetriesPerRequest null). */
  redis: Redis;
  services: Services;
  pipelines: Pipelines;
  /** A closure (no `this`): callers destructure it. */
  close: () => Promise<void>;
}

export function createDeps(config: Config, role: 'api' | 'worker', o: { log?: Logger; pipelines?: Pipelines } = {}): Deps {
  const log = o.log ?? createLogger({ level: config.LOG_LEVEL, name: role });
  const pipelines = o.pipelines ?? shipped;
  const db = createDatabase(config.DATABASE_URL, { applicationName: `etl-${role}`, ...(role === 'worker' ? { max: 8 } : {}) });
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: role === 'api' ? 2 : null });
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
  const services = createServices({ config, db, redis, log });
  return {
    config, log, db, redis, services, pipelines,
    async close() {
      await services.close();
      await db.close();
      redis.disconnect();
    },
  };
}
