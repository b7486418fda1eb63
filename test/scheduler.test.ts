import type { ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { updatePipeline } from '../db/pipelines';
import { createScheduler } from '../worker/scheduler';
import { createHarness, demoSeed, type Harness } from './engine-harness';
import { silentLog, waitFor } from './helpers';
import { spawnDemoWorker } from './services';

/** The cron scheduler against real Postgres and Redis, with several worker processes. */

const perSecond = (id: string, config: Record<string, unknown> = {}) => ({ ...demoSeed(id, config), cron: '* * * * * *' });
const perMinute = (id: string, catchup: 'none' | 'latest' | 'all') => ({ ...demoSeed(id), cron: '* * * * *', catchup });

let h: Harness;
const children: ChildProcess[] = [];
beforeAll(async () => {
  h = await createHarness({
    seeds: [perSecond('fast'), perSecond('slow', { transformMs: 2_500 }), perSecond('off'),
      perMinute('cu-none', 'none'), perMinute('cu-latest', 'latest'), perMinute('cu-all', 'all')],
  });
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});
afterAll(async () => h?.close());

interface Tick { scheduled_for: Date; outcome: string; run_id: string | null; claimed_by: string }
const ticks = async (id: string): Promise<Tick[]> =>
  (await h.db.pool.query('select scheduled_for, outcome, run_id, claimed_by from etl_schedule_ticks where pipeline_id = $1 order by scheduled_for', [id])).rows;
const scheduledRuns = async (id: string) =>
  (await h.db.pool.query(`select id, scheduled_for from etl_runs where pipeline_id = $1 and trigger = 'schedule' order by scheduled_for`, [id])).rows;
const fired = async (id: string) => (await ticks(id)).filter((t) => t.outcome === 'fired');

describe('scheduler with three worker replicas', () => {
  it('fires each due tick exactly once, records overlaps and disabled ticks, and follows cron edits live', async () => {
    const env = { DATABASE_URL: h.db.url, REDIS_URL: h.redisUrl, ETL_QUEUE: h.queueName, DEMO_PREFIX: h.prefix, SCHEDULER: '1' };
    children.push(...(await Promise.all([1, 2, 3].map(() => spawnDemoWorker(env)))));
    await updatePipeline(h.db.pool, 'fast', { enabled: true });
    await updatePipeline(h.db.pool, 'slow', { enabled: true });
    await waitFor(async () => (await fired('fast')).length >= 3, { timeoutMs: 20_000, what: '3 fired ticks' });

    // A cron edit in Postgres takes effect without a restart.
    const editAt = Date.now();
    await updatePipeline(h.db.pool, 'fast', { cron: '*/2 * * * * *' });
    await waitFor(async () => (await fired('fast')).filter((t) => t.scheduled_for.getTime() > editAt + 1_000).length >= 3,
      { timeoutMs: 20_000, what: '3 ticks after the edit' });
    await updatePipeline(h.db.pool, 'fast', { enabled: false });
    await updatePipeline(h.db.pool, 'slow', { enabled: false });
    const stopAt = Date.now();
    // Disabled pipelines log no ticks (a per-second schedule would write a row a second):
    // wait for the schedulers to move the cursor past a few seconds of disabled ticks.
    await waitFor(async () => (await h.db.pool.query(`select schedule_cursor from etl_pipelines where id = 'fast'`)).rows[0]
      .schedule_cursor.getTime() > stopAt + 3_000, { what: 'the cursor to pass disabled ticks' });
    expect((await ticks('fast')).filter((t) => t.scheduled_for.getTime() > stopAt + 1_000)).toEqual([]);
    await waitFor(async () => (await h.db.pool.query(`select count(*)::int as n from etl_schedule_ticks where outcome = 'pending'`)).rows[0].n === 0,
      { what: 'no pending tick' });

    // fast: every tick once (primary key), every fired tick has exactly one run.
    const fast = await ticks('fast');
    const fastRuns = await scheduledRuns('fast');
    expect(fast.every((t) => ['fired', 'skipped_overlap'].includes(t.outcome))).toBe(true);
    expect(fastRuns.length).toBe(fast.filter((t) => t.outcome === 'fired').length);
    expect(new Set(fastRuns.map((r) => r.id))).toEqual(new Set(fast.filter((t) => t.run_id).map((t) => t.run_id)));
    // No gaps while enabled: consecutive ticks one second apart until the edit, then two.
    for (let i = 1; i < fast.length; i++) {
      const gap = fast[i].scheduled_for.getTime() - fast[i - 1].scheduled_for.getTime();
      expect([1_000, 2_000]).toContain(gap);
      if (fast[i].scheduled_for.getTime() > editAt + 1_000) expect(fast[i].scheduled_for.getUTCSeconds() % 2).toBe(0);
    }
    // slow: a 2.5 s run on a 1 s cron overlaps; those ticks are skipped, not queued.
    const slow = await ticks('slow');
    expect(slow.filter((t) => t.outcome === 'skipped_overlap').length).toBeGreaterThan(0);
    expect((await scheduledRuns('slow')).length).toBe(slow.filter((t) => t.outcome === 'fired').length);
    // off: disabled the whole time: no tick row, no run, yet its cursor kept up.
    expect(await ticks('off')).toEqual([]);
    expect(await scheduledRuns('off')).toEqual([]);
    const offCursor = (await h.db.pool.query(`select schedule_cursor from etl_pipelines where id = 'off'`)).rows[0].schedule_cursor;
    expect(offCursor.getTime()).toBeGreaterThan(stopAt);
    // Scheduled runs carry the schedule as their actor, and each is in the audit trail.
    const audited = (await h.db.pool.query(`select count(*)::int as n from etl_audit_log where action = 'run.scheduled' and actor->>'kind' = 'schedule' and pipeline_id = 'fast'`)).rows[0].n;
    expect(audited).toBe(fastRuns.length);
    const actors = (await h.db.pool.query(`select distinct triggered_by from etl_runs where pipeline_id = 'fast'`)).rows.map((r) => r.triggered_by);
    expect(actors).toEqual([{ kind: 'schedule' }]);
  }, 90_000);
});

describe('catch-up after scheduler downtime', () => {
  it('none logs missed ticks, latest fires one, all fires each in order', async () => {
    for (const id of ['cu-none', 'cu-latest', 'cu-all']) await updatePipeline(h.db.pool, id, { enabled: true });
    // The schedulers were down from 4.5 minutes before minute M until M + 30 s: ticks
    // M-4 … M were all missed (5 ticks), each more than lateMs late.
    const M = Math.floor(Date.now() / 60_000) * 60_000;
    await h.db.pool.query(`update etl_pipelines set schedule_cursor = $1 where id like 'cu-%'`, [new Date(M - 4.5 * 60_000)]);
    // The replicas of the previous test logged these (then disabled) pipelines' ticks too.
    await h.db.pool.query(`delete from etl_schedule_ticks where pipeline_id like 'cu-%'`);
    const s = createScheduler({ db: h.db, engine: h.engine, log: silentLog, workerId: 'test', now: () => M + 30_000, lateMs: 10_000, retryPendingMs: 0 });
    await s.pass();

    const none = await ticks('cu-none');
    expect(none.map((t) => t.outcome)).toEqual(['missed', 'missed', 'missed', 'missed', 'missed']);
    expect(await scheduledRuns('cu-none')).toEqual([]);

    const latest = await ticks('cu-latest');
    expect(latest.map((t) => t.outcome)).toEqual(['missed', 'missed', 'missed', 'missed', 'fired']);
    expect((await scheduledRuns('cu-latest')).map((r) => r.scheduled_for.getTime())).toEqual([M]);

    // all: one run at a time (no overlap), oldest first, until every tick has its run.
    await waitFor(async () => {
      await s.sweepPending();
      return (await fired('cu-all')).length === 5;
    }, { timeoutMs: 30_000, intervalMs: 100, what: 'all 5 catch-up runs' });
    const runs = await scheduledRuns('cu-all');
    expect(runs.map((r) => r.scheduled_for.getTime())).toEqual([4, 3, 2, 1, 0].map((k) => M - k * 60_000));
    for (const r of runs) await h.waitRun(r.id, 'succeeded');
  }, 60_000);
});
