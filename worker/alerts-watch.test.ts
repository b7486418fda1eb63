import { createHmac } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, REDIS_URL, silentLog, uid } from '../test/helpers';
import { alertPayload, alertText, signBody } from './alerts-payload';
import { retryDelay } from './alerts-sender';
import { longestCronGapSeconds, maxAgeSeconds, publishedDatasets } from '../workflows/freshness';
import { createAlertWatch } from './alerts-watch';

/**
 * Staleness and overdue ticks against real Postgres and Redis: each breach and its end
 * alert once, even with two replicas evaluating at the same moment.
 */

const dsA = uid('alerts:a');
const dsB = uid('alerts:b');
const seeds = [
  { id: 'hourly', workflow: 'demo', description: '', cron: '0 * * * *', timezone: 'UTC', config: { datasets: [{ dataset: dsA }] } },
  { id: 'tight', workflow: 'demo', description: '', cron: '0 3 * * *', timezone: 'UTC', config: { dataset: dsB, freshness: { maxAgeSeconds: 60 } } },
];
let db: Awaited<ReturnType<typeof freshDatabase>>;
let redis: Redis;
beforeAll(async () => {
  db = await freshDatabase(seeds);
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await redis?.del(`cache:${dsA}:meta`, `cache:${dsB}:meta`);
  redis?.disconnect();
  await db?.drop();
});

const meta = (ds: string, agoMs: number) =>
  redis.set(`cache:${ds}:meta`, JSON.stringify({ runId: '00000000-0000-4000-8000-000000000001', pipelineId: 'x', rows: 1, updatedAt: new Date(Date.now() - agoMs).toISOString() }));
const alerts = async (type: string) =>
  (await db.pool.query(`select pipeline_id, dataset, summary from etl_alerts where type = $1 order by occurred_at`, [type])).rows;

describe('freshness rules', () => {
  it('maxAge is twice the longest gap of the next week, or config freshness.maxAgeSeconds', () => {
    expect(longestCronGapSeconds('0 * * * *', 'UTC')).toBe(3_600);
    expect(longestCronGapSeconds('0 9 * * 1-5', 'Europe/Kyiv')).toBe(72 * 3_600); // Friday 09:00 → Monday 09:00
    expect(maxAgeSeconds({ cron: '*/15 * * * *', timezone: 'UTC', config: {} })).toBe(1_800);
    expect(maxAgeSeconds({ cron: '0 3 * * *', timezone: 'UTC', config: { freshness: { maxAgeSeconds: 60 } } })).toBe(60);
    // The table a pipeline mirrors into is a dataset too: its staleness alerts like the others.
    expect(publishedDatasets({ datasets: [{ dataset: 'a' }, { dataset: 'b' }], dataset: 'c', postgres: { table: 'bq_projects' } }).map((d) => d.dataset))
      .toEqual(['a', 'b', 'c', 'bq_projects']);
  });
});

describe('the alert watch', () => {
  const watch = () => createAlertWatch({ db, redis, log: silentLog });

  it('dataset.stale and dataset.fresh once each; a never-published dataset says nothing', async () => {
    await meta(dsA, 60_000);
    await watch().pass();
    expect(await alerts('dataset.stale')).toEqual([]);
    await meta(dsA, 3 * 3_600_000); // older than 2 × 1 h
    await meta(dsB, 120_000); // older than its configured 60 s
    await Promise.all([watch().pass(), watch().pass()]);
    await watch().pass();
    const stale = await alerts('dataset.stale');
    expect(stale.map((a) => [a.pipeline_id, a.dataset]).sort()).toEqual([['hourly', dsA], ['tight', dsB]].sort());
    expect(stale.find((a) => a.dataset === dsA)!.summary).toMatch(/\(3 h ago\), older than its max age of 2 h: pipeline disabled/);
    await meta(dsA, 0);
    await Promise.all([watch().pass(), watch().pass()]);
    await watch().pass();
    expect((await alerts('dataset.fresh')).map((a) => a.dataset)).toEqual([dsA]);
    expect(await alerts('dataset.stale')).toHaveLength(2);
  });

  it('schedule.overdue once per episode: an enabled pipeline whose due tick nobody fired within 60 s', async () => {
    await db.pool.query(`update etl_pipelines set enabled = true, schedule_cursor = now() - interval '2 hours' where id = 'hourly'`);
    await Promise.all([watch().pass(), watch().pass()]);
    await watch().pass();
    const [a, ...more] = await alerts('schedule.overdue');
    expect(more).toEqual([]);
    expect(a).toMatchObject({ pipeline_id: 'hourly', summary: expect.stringMatching(/was not fired within 60 s \(no scheduler has handled it\)$/) });
    // The scheduler catches up: back to ok, silently; a later breach is a new alert.
    await db.pool.query(`update etl_pipelines set schedule_cursor = now() where id = 'hourly'`);
    await watch().pass();
    expect(await alerts('schedule.overdue')).toHaveLength(1);
    await db.pool.query(`insert into etl_schedule_ticks (pipeline_id, scheduled_for, outcome, claimed_by, recorded_at)
      values ('hourly', now() - interval '3 minutes', 'pending', 'w', now() - interval '3 minutes')`);
    await watch().pass();
    const list = await alerts('schedule.overdue');
    expect(list).toHaveLength(2);
    expect(list[1].summary).toMatch(/\(claimed but not fired\)$/);
  });
});

describe('payload', () => {
  const row = {
    id: '7d0b3c1e-0000-4000-8000-000000000000', type: 'run.failed' as const, occurredAt: new Date('2026-12-01T04:00:00Z'),
    pipelineId: 'yespo.OVAGO', runId: 'r-1', dataset: null, summary: 'paginate: HTTP 500\n  at page 40', details: null, attempts: 3,
  };
  it('is stable, one line of text, and signed over the raw body', () => {
    const p = alertPayload(row, 'https://etl.example.com/');
    expect(p).toEqual({
      id: row.id, type: 'run.failed', occurredAt: '2026-12-01T04:00:00.000Z', pipelineId: 'yespo.OVAGO', runId: 'r-1',
      summary: row.summary, url: 'https://etl.example.com/etl/#/runs/r-1',
      text: '🔴 ETL run of yespo.OVAGO failed: paginate: HTTP 500 at page 40 — https://etl.example.com/etl/#/runs/r-1',
    });
    expect(JSON.stringify(alertPayload(row, 'https://etl.example.com/'))).toBe(JSON.stringify(p));
    expect(alertPayload(row).url).toBeUndefined();
    expect(alertText({ ...row, type: 'dataset.stale', dataset: 'ch:top_dests', runId: null })).toMatch(/^🟠 Dataset ch:top_dests \(yespo.OVAGO\) is stale: /);
    expect(signBody('{"a":1}', 'k')).toBe(`sha256=${createHmac('sha256', 'k').update('{"a":1}').digest('hex')}`);
    expect(signBody('{"a":1}', 'k')).toMatch(/^sha256=[0-9a-f]{64}$/);
  });
  it('backs off exponentially with jitter, never more than 60 s apart', () => {
    expect(retryDelay(1, 2_000, 60_000, () => 1)).toBe(2_000);
    expect(retryDelay(3, 2_000, 60_000, () => 1)).toBe(8_000);
    expect(retryDelay(30, 2_000, 60_000, () => 1)).toBe(60_000);
    expect(retryDelay(30, 2_000, 60_000, () => 0)).toBe(45_000);
  });
});
