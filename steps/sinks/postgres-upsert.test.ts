import { randomUUID } from 'node:crypto';
import { asc, count, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bqProjects } from '../../db/schema';
import { asyncOf, freshDatabase, waitFor } from '../../test/helpers';
import { NonRetryableError } from '../../lib/errors';
import { copyRows, upsertRows, type UpsertRowsArgs } from './postgres-upsert';

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => { db = await freshDatabase(); });
afterAll(async () => db?.drop());
beforeEach(async () => { await db.db.delete(bqProjects); });

const COLUMNS = ['project_id', 'name', 'status', 'owner_email', 'budget_usd', 'created_at', 'updated_at', 'source_updated_at'];
const t0 = Date.parse('2026-01-01T00:00:00Z');
const project = (i: number, v = 1) => ({
  project_id: `p-${String(i).padStart(6, '0')}`,
  name: `Project ${i} v${v}`,
  status: i % 7 === 0 ? null : 'active',
  owner_email: `owner${i}@example.com`,
  budget_usd: i * 1.25 + v,
  created_at: new Date(t0 + i * 1000),
  updated_at: new Date(t0 + i * 1000 + v).toISOString(),
  source_updated_at: new Date(t0 + v * 60_000),
  ignored_extra_field: 'not a column',
});
type Project = ReturnType<typeof project>;

const batches = (list: readonly Record<string, unknown>[], o: { size?: number; failAt?: number; before?: (i: number) => void } = {}) =>
  asyncOf(slices(list, o));

function* slices(list: readonly Record<string, unknown>[], o: { size?: number; failAt?: number; before?: (i: number) => void }) {
  const size = o.size ?? 1_000;
  for (let i = 0; i < list.length; i += size) {
    if (o.failAt !== undefined && i >= o.failAt) throw new Error(`source broke at row ${i}`);
    o.before?.(i);
    yield list.slice(i, i + size);
  }
}
const range = (n: number, f: (i: number) => Project = project) => Array.from({ length: n }, (_, i) => f(i));

const upsert = (rows: readonly Record<string, unknown>[], a: Partial<UpsertRowsArgs> = {}) =>
  upsertRows({ db, table: 'bq_projects', keyColumns: ['project_id'], columns: COLUMNS, batches: batches(rows), runId: randomUUID(), ...a });

const table = () => db.db.select().from(bqProjects).orderBy(asc(bqProjects.projectId));
const total = async () => (await db.db.select({ n: count() }).from(bqProjects))[0].n;

describe('upsertRows', () => {
  it('deleteMissing mirrors the source: vanished keys are deleted in the same transaction, the last duplicate wins', async () => {
    await upsert(range(2_000));
    const before = await table();
    // Keys 0..9 vanish, 2000..2004 are new, every 100th changes, key 500 comes twice (the last wins).
    const next = [...range(2_005).slice(10).map((p) => (Number(p.project_id.slice(2)) % 100 === 0 ? project(Number(p.project_id.slice(2)), 2) : p)), project(500, 3)];
    expect(await upsert(next, { deleteMissing: true })).toEqual({ rows: 1_996, inserted: 5, updated: 19, unchanged: 1_971, duplicates: 1, deleted: 10 });
    const after = await table();
    expect(after.map((r) => r.projectId)).toEqual(range(2_005).slice(10).map((p) => p.project_id));
    expect(after.find((r) => r.projectId === 'p-000500')!.name).toBe('Project 500 v3');
    expect(after.find((r) => r.projectId === 'p-000501')).toEqual(before.find((r) => r.projectId === 'p-000501'));
    // Again: nothing to do.
    expect(await upsert(next, { deleteMissing: true })).toMatchObject({ inserted: 0, updated: 0, deleted: 0 });
    // A failing source rolls the whole mirror back: nothing is deleted.
    await expect(upsertRows({ db, table: 'bq_projects', keyColumns: ['project_id'], columns: COLUMNS, batches: batches(range(100), { failAt: 50, size: 10 }), runId: randomUUID(), deleteMissing: true }))
      .rejects.toThrow('source broke at row 50');
    expect(await total()).toBe(1_995);
  });

  it('inserts, re-runs without duplicates or rewrites, then applies only the changes', async () => {
    const run1 = randomUUID();
    expect(await upsert(range(10_000), { runId: run1 })).toEqual({ rows: 10_000, inserted: 10_000, updated: 0, unchanged: 0, duplicates: 0, deleted: 0 });
    expect(await total()).toBe(10_000);
    const first = await table();
    expect(first[7]).toEqual({
      projectId: 'p-000007', name: 'Project 7 v1', status: null, ownerEmail: 'owner7@example.com', budgetUsd: 9.75,
      createdAt: new Date(t0 + 7_000), updatedAt: new Date(t0 + 7_001), sourceUpdatedAt: new Date(t0 + 60_000),
      lastRunId: run1, syncedAt: expect.any(Date),
    });

    // Same rows again: nothing changes, not even the bookkeeping columns.
    expect(await upsert(range(10_000))).toEqual({ rows: 10_000, inserted: 0, updated: 0, unchanged: 10_000, duplicates: 0, deleted: 0 });
    expect(await table()).toEqual(first);

    // 100 changed, 50 new.
    const run3 = randomUUID();
    const next = range(10_050, (i) => project(i, i % 100 === 0 || i >= 10_000 ? 2 : 1));
    expect(await upsert(next, { runId: run3 })).toEqual({ rows: 10_050, inserted: 50, updated: 100, unchanged: 9_900, duplicates: 0, deleted: 0 });
    const after = await table();
    expect(after).toHaveLength(10_050);
    expect(after.filter((r) => r.lastRunId === run3)).toHaveLength(150);
    expect(after[200]).toMatchObject({ name: 'Project 200 v2', budgetUsd: 252, lastRunId: run3 });
    expect(after[201]).toEqual(first[201]);
  });

  it('a key repeated within one load: the last row wins', async () => {
    const rows = [project(1, 1), project(2, 1), project(1, 2), project(1, 3), project(3, 1)];
    expect(await upsert(rows)).toMatchObject({ rows: 5, inserted: 3, duplicates: 2 });
    expect((await table()).map((r) => r.name)).toEqual(['Project 1 v3', 'Project 2 v1', 'Project 3 v1']);
  });

  it('keys that are one key in Postgres but different JS strings (lone surrogates arrive as U+FFFD) still merge to one row', async () => {
    const rows = [{ ...project(1), project_id: 'k\uD800' }, { ...project(2), project_id: 'k\uDBFF' }];
    expect(await upsert(rows)).toMatchObject({ rows: 2, inserted: 1, duplicates: 1 });
    expect((await table()).map((r) => [r.projectId, r.name])).toEqual([['k\uFFFD', 'Project 2 v1']]);
  });

  // Both succeed and the table ends as one of them; that the lock orders them is shown
  // deterministically by the next test (this one also passed with the lock taken out).
  it('two mirrors of the table at once: both succeed, and the table ends as exactly one of them', async () => {
    await upsert(range(3_000));
    const a = range(2_000, (i) => project(i, 2));
    const b = range(2_000, (i) => project(i + 1_000, 3));
    const seen = (list: readonly Project[]) => list.map((p) => `${p.project_id} ${p.name}`);
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all([upsert(a, { deleteMissing: true }), upsert(b, { deleteMissing: true })]);
      expect(results.every((r) => r.rows === 2_000)).toBe(true);
      expect([seen(a), seen(b)]).toContainEqual((await table()).map((r) => `${r.projectId} ${r.name}`));
    }
  });

  it('a write to the table in flight elsewhere: the merge waits for its commit, then sees it and corrects it', async () => {
    await upsert(range(100));
    const other = await db.pool.connect();
    try {
      await other.query('begin');
      await other.query(`update bq_projects set name = 'edited elsewhere' where project_id = 'p-000007'`);
      const load = upsert(range(100), { deleteMissing: true });
      await waitFor(async () => {
        const r = await db.db.execute(sql`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like 'lock table%' and datname = current_database()`);
        return r.rows.length > 0;
      }, { intervalMs: 5, timeoutMs: 10_000, what: 'the merge to wait for the table lock' });
      await other.query('commit');
      expect(await load).toMatchObject({ rows: 100, updated: 1, unchanged: 99, deleted: 0 });
    } finally {
      await other.query('rollback'); // a no-op after the commit; on a failure, frees the table
      other.release();
    }
    expect((await table())[7].name).toBe('Project 7 v1');
  });

  it('round-trips hostile values exactly', async () => {
    const hostile = [
      `O'Brien "quoted" ''`, 'back\\slash\\', '\\N', 'NULL', '', '  padded  ', 'tab\there\t', 'new\nline\n', 'cr\r\nlf\r',
      '\\.', '\\.\n\\.', 'line\n\\.\nafter', 'héllo 🌍 中文 עברית', '\u2028\u2029', '\\\\\\t', ';drop table bq_projects;--', 'x'.repeat(100_000),
    ];
    const rows = hostile.map((name, i) => ({ ...project(i), project_id: `k${i}'"\t\\\n${name.slice(0, 10)}`, name, owner_email: i % 2 ? null : name }));
    expect(await upsert(rows)).toMatchObject({ inserted: hostile.length });
    const stored = new Map((await table()).map((r) => [r.projectId, r]));
    for (const r of rows) {
      expect(stored.get(r.project_id)).toMatchObject({ name: r.name, ownerEmail: r.owner_email });
    }
    // Unchanged on re-run: the round trip is exact, so IS DISTINCT FROM finds nothing.
    expect(await upsert(rows)).toMatchObject({ updated: 0, unchanged: hostile.length });
  });

  it('NUL characters fail the load clearly by default, or are stripped on request', async () => {
    await upsert(range(10));
    const before = await table();
    const bad = [...range(10, (i) => project(i, 2)), { ...project(10), name: 'nul\0here' }];
    const err = await upsert(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as Error).message).toBe('postgres sink bq_projects: row 11, column name: value contains a NUL character, which Postgres text cannot store (nulBytes: "strip" removes it)');
    expect(await table()).toEqual(before);

    await upsert(bad, { nulBytes: 'strip' });
    expect((await table())[10].name).toBe('nulhere');
  });

  it('a failure mid-stream, an abort or bad data rolls back everything', async () => {
    await upsert(range(3_000));
    const before = await table();
    const changed = range(12_000, (i) => project(i, 9));

    await expect(upsert(changed, { batches: batches(changed, { failAt: 6_000 }) })).rejects.toThrow('source broke at row 6000');
    expect(await table()).toEqual(before);

    const ac = new AbortController();
    const reason = new Error('run cancelled');
    const aborting = batches(changed, { before: (i) => { if (i === 5_000) ac.abort(reason); } });
    await expect(upsert(changed, { batches: aborting, signal: ac.signal })).rejects.toBe(reason);
    expect(await table()).toEqual(before);

    const typo = changed.map((r, i) => (i === 7_000 ? { ...r, budget_usd: 'twelve' } : r));
    const err = await upsert(typo).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as NonRetryableError).message).toMatch(/invalid input syntax for type double precision: "twelve".*line 7001, column budget_usd/);
    expect((err as NonRetryableError).details).toEqual({ sqlstate: '22P02' });
    expect(await table()).toEqual(before);

    // The pooled connections survived the aborted COPYs.
    expect(await upsert(changed)).toMatchObject({ inserted: 9_000, updated: 3_000 });
  });

  it('an abort while the merge runs cancels it on the server and rolls back', async () => {
    await upsert(range(50_000));
    const before = await total();
    const changed = range(100_000, (i) => project(i, 5));
    const ac = new AbortController();
    const reason = new Error('step timed out');
    // Abort the moment the merge statement shows up as running on the server.
    const merging = waitFor(async () => {
      const r = await db.db.execute(sql`select 1 from pg_stat_activity where state = 'active' and query like 'create temp table etl_upsert_changed%' and datname = current_database()`);
      return r.rows.length > 0;
    }, { intervalMs: 5, timeoutMs: 30_000, what: 'the merge to start' }).then(() => ac.abort(reason));
    await expect(upsert(changed, { signal: ac.signal })).rejects.toBe(reason);
    await merging;
    expect(await total()).toBe(before);
    expect((await table()).every((r) => r.name.endsWith('v1'))).toBe(true);
    expect(await upsert(range(10))).toMatchObject({ unchanged: 10 }); // connections are fine
  });

  it('the data check runs on the staged count before anything is merged', async () => {
    await upsert(range(100));
    const before = await table();
    await expect(upsert(range(40, (i) => project(i, 2)), { lastGoodRows: 100 })).rejects.toThrow("40 rows is less than 50% of the last good run's 100 rows");
    await expect(upsert([], { lastGoodRows: 100 })).rejects.toThrow(/0 rows: refusing/);
    expect(await table()).toEqual(before);
    expect(await upsert([], { check: { allowEmpty: true } })).toMatchObject({ rows: 0, inserted: 0 });
  });

  it('loads a subset of columns and leaves the others as they are', async () => {
    await upsert(range(5));
    await upsert([{ project_id: 'p-000001', name: 'renamed' }, { project_id: 'new', name: 'fresh' }], { columns: ['project_id', 'name'] });
    const rows = await table();
    expect(rows.find((r) => r.projectId === 'p-000001')).toMatchObject({ name: 'renamed', ownerEmail: 'owner1@example.com' });
    expect(rows.find((r) => r.projectId === 'new')).toMatchObject({ name: 'fresh', status: null, syncedAt: expect.any(Date) });
  });

  it('accepts only whitelisted tables and real columns', async () => {
    const cases: [Partial<UpsertRowsArgs>, RegExp][] = [
      [{ table: 'etl_runs' as 'bq_projects' }, /unknown sink table "etl_runs"/],
      [{ table: 'toString' as 'bq_projects' }, /unknown sink table/],
      [{ columns: [...COLUMNS, 'name"; drop table bq_projects; --'] }, /has no column "name\\"; drop table/],
      [{ columns: ['project_id', 'status'] }, /bq_projects.name is NOT NULL without a default/],
      [{ columns: [...COLUMNS, 'last_run_id'] }, /last_run_id is filled by the sink itself/],
      [{ keyColumns: ['name'] }, /keyColumns must be its primary key \(project_id\)/],
      [{ columns: ['project_id', 'name', 'name'] }, /listed twice/],
      [{ columns: [...COLUMNS, 'etl_ord'] }, /has no column "etl_ord"/],
    ];
    for (const [args, message] of cases) {
      const err = await upsert(range(1), args).catch((e: unknown) => e);
      expect(err, String(message)).toBeInstanceOf(NonRetryableError);
      expect((err as Error).message).toMatch(message);
    }
    expect(await total()).toBe(0);
  });

  it('rejects a row without a key', async () => {
    await expect(upsert([project(1), { ...project(2), project_id: null }])).rejects.toThrow('row 2, column project_id: key column is null');
  });
});

describe('copyRows', () => {
  it('copies straight into the table; a duplicate key fails the whole COPY', async () => {
    const cols = [...COLUMNS, 'last_run_id'];
    const runId = randomUUID();
    const rows = range(5_000).map((r) => ({ ...r, last_run_id: runId }));
    expect(await copyRows({ db, table: 'bq_projects', columns: cols, batches: batches(rows) })).toEqual({ rows: 5_000 });
    expect(await total()).toBe(5_000);
    expect((await table())[42]).toMatchObject({ name: 'Project 42 v1', lastRunId: runId });

    const err = await copyRows({ db, table: 'bq_projects', columns: cols, batches: batches(range(10)) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as NonRetryableError).details).toEqual({ sqlstate: '23505' });
    expect(await total()).toBe(5_000);
  });
});
