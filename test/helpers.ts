import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabase, type Database } from '../db/client';
import { migrateDatabase } from '../db/migrate';
import type { PipelineSeed } from '../db/pipelines';
import { createLogger } from '../lib/logger';

export const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export const uid = (prefix: string) => `${prefix}_${randomBytes(5).toString('hex')}`;

export const silentLog = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** A fresh, migrated database for one test file; `drop()` removes it. */
export async function freshDatabase(seeds: readonly PipelineSeed[] = [], base = PG_BASE): Promise<Database & { url: string; drop(): Promise<void> }> {
  const name = uid('etl_test');
  const url = `${base}/${name}`;
  await migrateDatabase(url, seeds);
  const database = createDatabase(url, { max: 10 });
  return {
    ...database,
    url,
    async drop() {
      await database.close();
      const admin = new pg.Client({ connectionString: `${base}/postgres` });
      await admin.connect().catch(() => {});
      await admin.query(`drop database if exists "${name}" with (force)`).catch(() => {});
      await admin.end();
    },
  };
}

/** A sync iterable's items as an async source (what the sinks read), one item a pull:
 *  lazy, and an error the iterable throws rejects that pull, as with an async generator. */
// eslint-disable-next-line @typescript-eslint/require-await -- the async generator is the point: it adapts a sync iterable to AsyncIterable, nothing to await
export async function* asyncOf<T>(items: Iterable<T>): AsyncGenerator<T, void, undefined> {
  yield* items;
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(fn: () => Promise<T> | T, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
  const failure = last as Error | undefined; // what fn threw: an Error in practice
  throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${failure ? `: ${String(failure)}` : ''}`);
}
