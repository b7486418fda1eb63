import type { Redis } from 'ioredis';
import type { Config } from '../config';
import type { Database } from '../db/client';
import type { Logger } from '../lib/logger';

/**
 * What step code gets injected through `ctx.services`: clients and helpers, built once
 * per worker process. Step code never imports pg, ioredis or BullMQ itself.
 */
export interface Services {
  config: Config;
  db: Database;
  redis: Redis;
  log: Logger;
  close(): Promise<void>;
}

export function createServices(a: { config: Config; db: Database; redis: Redis; log: Logger }): Services {
  return { ...a, async close() {} };
}
