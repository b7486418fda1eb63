import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as steps from '../../db/steps';
import { freshDatabase, silentLog } from '../../test/helpers';
import { attempts, newRun, seed } from '../../test/run-rows';
import { createGroupCommit, type GroupCommit } from './group-commit';

/**
 * Group commit against a real Postgres: statements asked for while another is in flight
 * share one transaction, each still gets its own result, and a group that fails commits
 * nothing before its statements are sent again alone.
 */

let db: Awaited<ReturnType<typeof freshDatabase>>;
let group: GroupCommit;
beforeAll(async () => {
  db = await freshDatabase([seed('p')]);
  group = createGroupCommit({ db, log: silentLog, maxInFlight: 1 });
});
afterAll(async () => {
  await group?.close();
  await db?.drop();
});

const claim = (runId: string) => (q: Parameters<typeof steps.claimStep>[0]) =>
  steps.claimStep(q, { runId, key: 'fetch', generation: 0, jobId: `${runId}.g0.fetch`, worker: 'A' });

/** Keeps the only lane busy for a moment, so what is asked for meanwhile forms one group. */
const occupy = () => group.run((q) => q.query('select pg_sleep(0.2)'));

/** How many transactions wrote the runs' first steps. */
async function writers(runIds: string[]): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `select count(distinct xmin::text)::int as n from etl_run_steps where run_id = any($1::uuid[]) and key = 'fetch'`, [runIds]);
  return rows[0].n;
}

describe('group commit', () => {
  it('sends what is asked for meanwhile in one transaction, each statement with its own result', async () => {
    const runIds = await Promise.all(Array.from({ length: 8 }, () => newRun(db.pool, 'p')));
    const busy = occupy();
    const claims = await Promise.all(runIds.map((id) => group.run(claim(id))));
    await busy;
    expect(claims.map((c) => c?.attempt)).toEqual(runIds.map(() => 1));
    expect(claims.every((c) => c?.runStarted && c.params.p === 1)).toBe(true);
    expect(await writers(runIds)).toBe(1);
  });

  it('a failing statement rolls its group back; the others are then sent alone and land once', async () => {
    const [a, b] = await Promise.all([newRun(db.pool, 'p'), newRun(db.pool, 'p')]);
    const busy = occupy();
    const results = await Promise.allSettled([
      group.run(claim(a)),
      group.run((q) => q.query('select 1 / 0')),
      group.run(claim(b)),
    ]);
    await busy;
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/division by zero/);
    // Had the group's claims committed, sending them again would have made attempt 2.
    expect(await attempts(db.pool, a, 'fetch')).toEqual([[1, 'running', 'A']]);
    expect(await attempts(db.pool, b, 'fetch')).toEqual([[1, 'running', 'A']]);
    expect(await writers([a, b])).toBe(2);
  });

  it('a statement asked for while nothing is in flight goes alone, at once', async () => {
    const a = await newRun(db.pool, 'p');
    const claimed = await group.run(claim(a));
    expect(claimed?.attempt).toBe(1);
  });
});
