import type pg from 'pg';

/**
 * Transactions and advisory locks, written once. Every BEGIN/COMMIT and every advisory
 * lock of the project goes through here, so the rules below hold everywhere:
 * - a failure inside `fn` rolls back and rethrows the original error;
 * - a connection whose ROLLBACK itself fails is in an unknown state: it is destroyed,
 *   never handed back to the pool;
 * - the client is released exactly once.
 */
export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

const ignore = () => {};

/** pg-pool takes its own 'error' listener off a client while it is checked out, so a
 *  connection lost mid-use (a Postgres restart) would emit an unhandled 'error' and end
 *  the process. Its queries reject with the error anyway: the event itself is dropped. */
async function checkout(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  client.on('error', ignore);
  return client;
}

function checkin(client: pg.PoolClient, broken?: Error): void {
  client.off('error', ignore);
  client.release(broken);
}

/** `dropOnError`: a failure inside `fn` destroys the connection (e.g. a COPY that failed
 *  half-way leaves it in an unknown state) instead of handing it back. */
export async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, opts: { dropOnError?: boolean } = {}): Promise<T> {
  const client = await checkout(pool);
  let broken: Error | undefined;
  try {
    return await fn(client);
  } catch (err) {
    if (opts.dropOnError) broken = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    checkin(client, broken);
  }
}

export async function withTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await checkout(pool);
  let broken: Error | undefined;
  try {
    await client.query('begin');
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (err) {
    await client.query('rollback').catch((e: Error) => { broken = e; });
    throw err;
  } finally {
    checkin(client, broken);
  }
}

/** Project-wide advisory lock keys: one place, so two features never share a key. */
export const LOCKS = {
  migrate: 7301001,
  reconcile: 7301002,
} as const;

/**
 * Runs `fn` in a transaction holding the transaction-scoped advisory lock `key`, if it
 * can be had at once; answers null (and runs nothing) when another session holds it.
 * The lock ends with the transaction, so a crashed holder never keeps it.
 */
export async function withTryXactLock<T>(pool: pg.Pool, key: number, fn: (c: pg.PoolClient) => Promise<T>): Promise<T | null> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ ok: boolean }>('select pg_try_advisory_xact_lock($1) as ok', [key]);
    if (!rows[0].ok) return null;
    return fn(client);
  });
}

/**
 * Runs `fn` on a session holding the session-level advisory lock `key`, waiting for it.
 * For work that must not run inside one transaction (e.g. migrations, which manage their
 * own). The lock is released even when `fn` fails; a crash releases it with the session.
 */
export async function withSessionLock<T>(client: pg.ClientBase, key: number, fn: () => Promise<T>): Promise<T> {
  await client.query('select pg_advisory_lock($1)', [key]);
  try {
    return await fn();
  } finally {
    await client.query('select pg_advisory_unlock($1)', [key]).catch(() => {});
  }
}
