import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { afterAll, describe, expect, it } from 'vitest';
import { PG_BASE, uid } from '../test/helpers';
import { createDatabaseIfMissing, migrateDatabase } from './migrate';

/** Migration bookkeeping in our own schema, and the one-time move of an old install's history. */

const folder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
const ours = readMigrationFiles({ migrationsFolder: folder });
const seeds = [{ id: 'demo', workflow: 'demo', description: 'demo', cron: '0 * * * *', timezone: 'UTC', config: {} }];
const created: string[] = [];

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function newDatabase(): Promise<string> {
  const url = `${PG_BASE}/${uid('etl_mig')}`;
  created.push(url);
  await createDatabaseIfMissing(url);
  return url;
}

const history = (c: pg.Client, table: string) =>
  c.query<{ hash: string; created_at: string }>(`select hash, created_at from ${table} order by id`).then((r) => r.rows);
const exists = (c: pg.Client, name: string) =>
  c.query<{ t: string | null }>('select to_regclass($1)::text as t', [name]).then((r) => r.rows[0].t !== null);

afterAll(async () => {
  await withClient(`${PG_BASE}/postgres`, async (admin) => {
    for (const url of created) await admin.query(`drop database if exists "${new URL(url).pathname.slice(1)}" with (force)`);
  });
});

describe('migrateDatabase', () => {
  it('keeps its history in etl.__drizzle_migrations and never creates drizzle’s default schema', async () => {
    const url = await newDatabase();
    await migrateDatabase(url, seeds);
    await withClient(url, async (c) => {
      expect((await history(c, 'etl.__drizzle_migrations')).map((r) => r.hash)).toEqual(ours.map((m) => m.hash));
      expect((await c.query(`select 1 from pg_namespace where nspname = 'drizzle'`)).rowCount).toBe(0);
    });
  });

  it('moves an old install’s history out of drizzle.__drizzle_migrations once, leaving SP0’s rows alone', async () => {
    const url = await newDatabase();
    // The old install: drizzle's default bookkeeping, shared with SP0's own migrations.
    await withClient(url, async (c) => {
      await migrate(drizzle(c), { migrationsFolder: folder });
      await c.query(`insert into etl_pipelines (id, workflow, description, cron, timezone, config) values ('kept', 'demo', 'operator row', '0 3 * * *', 'UTC', '{}')`);
      // SP0's newest migration: under the shared table, drizzle would skip every migration of
      // ours older than this row.
      await c.query(`insert into drizzle.__drizzle_migrations (hash, created_at) values ('sp0-0007-hash', $1)`, [Date.now() + 86_400_000]);
    });

    await migrateDatabase(url, seeds); // would fail on "relation already exists" if it re-ran ours
    await withClient(url, async (c) => {
      const moved = await history(c, 'etl.__drizzle_migrations');
      expect(moved.map((r) => r.hash)).toEqual(ours.map((m) => m.hash));
      expect(moved.map((r) => Number(r.created_at))).toEqual(ours.map((m) => m.folderMillis));
      expect((await history(c, 'drizzle.__drizzle_migrations')).map((r) => r.hash)).toEqual(['sp0-0007-hash']);
      expect((await c.query(`select description from etl_pipelines where id = 'kept'`)).rows).toEqual([{ description: 'operator row' }]);
    });

    // Once: a second run changes nothing.
    await migrateDatabase(url, seeds);
    await withClient(url, async (c) => {
      expect(await history(c, 'etl.__drizzle_migrations')).toHaveLength(ours.length);
      expect(await history(c, 'drizzle.__drizzle_migrations')).toHaveLength(1);
    });
  });

  it('drops drizzle’s default table and schema when only our history was in them', async () => {
    const url = await newDatabase();
    await withClient(url, (c) => migrate(drizzle(c), { migrationsFolder: folder }));
    await migrateDatabase(url, seeds);
    await withClient(url, async (c) => {
      expect(await exists(c, 'drizzle.__drizzle_migrations')).toBe(false);
      expect((await c.query(`select 1 from pg_namespace where nspname = 'drizzle'`)).rowCount).toBe(0);
      expect(await history(c, 'etl.__drizzle_migrations')).toHaveLength(ours.length);
    });
  });
});
