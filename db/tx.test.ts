import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../test/helpers';
import { LOCKS, withClient, withSessionLock, withTransaction, withTryXactLock } from './tx';

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase();
  await db.pool.query('create table t (v int)');
});
afterAll(async () => db?.drop());

const values = async () => (await db.pool.query('select v from t order by v')).rows.map((r) => r.v);
/** Whether some session of this database holds advisory lock `key` (pg_locks covers the
 *  whole cluster, where other test files take the same keys in their own databases). */
const held = async (key: number) => (await db.pool.query(
  `select 1 from pg_locks where locktype = 'advisory' and objid = $1 and granted
     and database = (select oid from pg_database where datname = current_database())`, [key])).rowCount === 1;

describe('withTransaction', () => {
  it('commits what fn wrote and hands the connection back', async () => {
    await db.pool.query('truncate t');
    expect(await withTransaction(db.pool, async (c) => (await c.query('insert into t values (1) returning v')).rows[0].v)).toBe(1);
    expect(await values()).toEqual([1]);
    expect(db.pool.totalCount - db.pool.idleCount).toBe(0);
  });

  it('rolls back on an error and rethrows the original error', async () => {
    await db.pool.query('truncate t');
    const boom = new Error('boom');
    await expect(withTransaction(db.pool, async (c) => {
      await c.query('insert into t values (2)');
      throw boom;
    })).rejects.toBe(boom);
    expect(await values()).toEqual([]);
    // The connection went back clean: the next user is not inside an aborted transaction.
    expect(await withClient(db.pool, async (c) => (await c.query('select 1 as ok')).rows[0].ok)).toBe(1);
  });

  it('destroys a connection whose rollback fails instead of pooling it', async () => {
    await db.pool.query('select 1'); // an idle connection for withTransaction to reuse
    const before = db.pool.totalCount;
    const err = await withTransaction(db.pool, async (c) => {
      await c.query('select pg_terminate_backend(pg_backend_pid())');
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(db.pool.totalCount).toBe(before - 1);
    expect(db.pool.totalCount - db.pool.idleCount).toBe(0);
    expect(await withClient(db.pool, async (c) => (await c.query('select 1 as ok')).rows[0].ok)).toBe(1);
  });
});

describe('withClient', () => {
  it('hands the connection back after a failure, or destroys it with dropOnError', async () => {
    await db.pool.query('select 1');
    const before = db.pool.totalCount;
    await expect(withClient(db.pool, () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(db.pool.totalCount).toBe(before);
    await expect(withClient(db.pool, () => Promise.reject(new Error('y')), { dropOnError: true })).rejects.toThrow('y');
    expect(db.pool.totalCount).toBe(before - 1);
    expect(db.pool.totalCount - db.pool.idleCount).toBe(0);
  });
});

describe('advisory locks', () => {
  it('withTryXactLock answers null (running nothing) while another session holds the lock', async () => {
    let ran = 0;
    const outer = await withTryXactLock(db.pool, LOCKS.reconcile, async () => {
      expect(await held(LOCKS.reconcile)).toBe(true);
      const inner = await withTryXactLock(db.pool, LOCKS.reconcile, () => { ran++; return Promise.resolve('inner'); });
      return { inner };
    });
    expect(outer).toEqual({ inner: null });
    expect(ran).toBe(0);
    // The lock ended with the transaction: the next try gets it.
    expect(await held(LOCKS.reconcile)).toBe(false);
    expect(await withTryXactLock(db.pool, LOCKS.reconcile, () => Promise.resolve('got it'))).toBe('got it');
  });

  it('withTryXactLock releases the lock when fn fails', async () => {
    await expect(withTryXactLock(db.pool, LOCKS.reconcile, () => Promise.reject(new Error('pass failed')))).rejects.toThrow('pass failed');
    expect(await held(LOCKS.reconcile)).toBe(false);
  });

  it('withSessionLock holds the lock during fn and releases it even when fn fails', async () => {
    await withClient(db.pool, async (c) => {
      await expect(withSessionLock(c, LOCKS.migrate, async () => {
        expect(await held(LOCKS.migrate)).toBe(true);
        expect(await withTryXactLock(db.pool, LOCKS.migrate, () => Promise.resolve('other'))).toBeNull();
        throw new Error('migration failed');
      })).rejects.toThrow('migration failed');
    });
    expect(await held(LOCKS.migrate)).toBe(false);
  });
});
