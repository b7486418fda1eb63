import type pg from 'pg';
import { readMigrationFiles } from 'drizzle-orm/migrator';

/**
 * Where drizzle records which of our migrations ran. Not drizzle's default
 * `drizzle.__drizzle_migrations`: SP0's own drizzle migrations may keep their history
 * there in the same database, and drizzle applies only migrations newer than the newest
 * row of that table, so a shared table would make one project skip the other's
 * migrations.
 */
export const MIGRATIONS_SCHEMA = 'etl';
export const MIGRATIONS_TABLE = '__drizzle_migrations';

/**
 * Moves an install's history from drizzle's default table to ours, once: only rows whose
 * hash is one of our migration files move (SP0's rows stay where they are). Runs before
 * `migrate`, under the caller's advisory lock; a no-op once our table has rows. Drizzle's
 * table (and schema) is dropped only when nothing is left in it.
 */
export async function adoptLegacyHistory(client: pg.ClientBase, migrationsFolder: string): Promise<number> {
  const { rows: [found] } = await client.query<{ ours: string | null; legacy: string | null }>(
    `select to_regclass('${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE}')::text as ours, to_regclass('drizzle.__drizzle_migrations')::text as legacy`,
  );
  if (!found?.legacy) return 0;
  if (found.ours) {
    const { rows } = await client.query(`select 1 from ${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE} limit 1`);
    if (rows.length) return 0;
  }
  const hashes = readMigrationFiles({ migrationsFolder }).map((m) => m.hash);
  await client.query('begin');
  try {
    await client.query(`create schema if not exists ${MIGRATIONS_SCHEMA}`);
    // The table drizzle itself would create (pg-core dialect), so `migrate` finds it as its own.
    await client.query(`create table if not exists ${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE} (id serial primary key, hash text not null, created_at bigint)`);
    const moved = await client.query(
      `with gone as (delete from drizzle.__drizzle_migrations where hash = any($1::text[]) returning id, hash, created_at)
       insert into ${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE} (hash, created_at) select hash, created_at from gone order by id`,
      [hashes],
    );
    const { rows: [left] } = await client.query<{ n: number }>('select count(*)::int as n from drizzle.__drizzle_migrations');
    if (left.n === 0) {
      await client.query('drop table drizzle.__drizzle_migrations');
      const { rows: [other] } = await client.query<{ n: number }>(
        `select (select count(*) from pg_class where relnamespace = 'drizzle'::regnamespace)
              + (select count(*) from pg_proc where pronamespace = 'drizzle'::regnamespace)
              + (select count(*) from pg_type where typnamespace = 'drizzle'::regnamespace and typtype <> 'c') as n`,
      );
      if (Number(other.n) === 0) await client.query('drop schema drizzle');
    }
    await client.query('commit');
    return moved.rowCount ?? 0;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  }
}
