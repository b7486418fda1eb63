import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { adoptLegacyHistory, MIGRATIONS_SCHEMA, MIGRATIONS_TABLE } from './migrations-history';
import { seedPipelines, type PipelineSeed } from './pipelines';
import { LOCKS, withSessionLock } from './tx';

const migrationsFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Creates the database named in `url` if it does not exist (connects to `postgres`). */
export async function createDatabaseIfMissing(url: string): Promise<boolean> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`unsupported database name in DATABASE_URL: ${JSON.stringify(name)}`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (rowCount) return false;
    try {
      await client.query(`create database "${name}"`);
    } catch (err) {
      // Another process created it between our check and our create.
      if ((err as { code?: string }).code !== '42P04') throw err;
    }
    return true;
  } finally {
    await client.end();
  }
}

/** Idempotent: create database, apply migrations, seed pipelines (never overwriting
 *  operator edits). Serialised by an advisory lock so replicas can all run it. The
 *  history lives in `etl.__drizzle_migrations` (db/migrations-history.ts). */
export async function migrateDatabase(url: string, seeds: readonly PipelineSeed[]): Promise<void> {
  await createDatabaseIfMissing(url);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await withSessionLock(client, LOCKS.migrate, async () => {
      await adoptLegacyHistory(client, migrationsFolder);
      await migrate(drizzle(client), { migrationsFolder, migrationsSchema: MIGRATIONS_SCHEMA, migrationsTable: MIGRATIONS_TABLE });
      await seedPipelines(client, seeds);
    });
  } finally {
    await client.end();
  }
}
