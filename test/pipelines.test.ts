import { createClient, ClickHouseLogLevel, type ClickHouseClient } from '@clickhouse/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { updatePipeline } from '../db/pipelines';
import { listStepEvents } from '../db/step-events';
import { startBigQueryEmulator, type BigQueryEmulator } from '../sandbox/bigquery-emulator';
import { sandboxBigQueryTables } from '../sandbox/data';
import { startYespoFake, type YespoFake } from '../sandbox/yespo-fake';
import { createServices, type Services } from '../steps/services';
import { createEngine, type Engine } from '../workflows/engine/engine';
import { startWorkerRuntime } from '../worker/worker';
import { defaultRegistry, pipelineSeeds } from '../workflows/index';
import { ensureClickHouse, uniqueDatabaseName } from './fakes/clickhouse';
import { startPlatform, type Platform } from './platform';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

/**
 * The five pipelines end to end through the engine: the official BigQuery client against
 * the local REST emulator, the official ClickHouse client against a real ClickHouse, the
 * Yespo paginator against the fake (with faults), into real Redis and Postgres.
 */
const prefix = uid('t');
const YESPO_KEYS = { OVAGO: `ovago-key-${uid('k')}`, brand_b: `brandb-key-${uid('k')}` };
let db: Awaited<ReturnType<typeof freshDatabase>>;
let redis: Redis;
let bq: BigQueryEmulator;
let yespo: YespoFake;
let ch: ClickHouseClient;
let chDb: string;
let services: Services;
let engine: Engine;
let platform: Platform | undefined;

const ds = (name: string) => `${prefix}:${name}`;
const key = (name: string) => `cache:${ds(name)}`;

beforeAll(async () => {
  const chUrl = await ensureClickHouse();
  chDb = uniqueDatabaseName('pipelines');
  ch = createClient({ url: chUrl, log: { level: ClickHouseLogLevel.OFF } });
  await ch.command({ query: `CREATE DATABASE ${chDb}` });
  await ch.command({ query: `CREATE TABLE ${chDb}.searches (event_date Date, destination String, user_id UInt64) ENGINE = MergeTree() ORDER BY event_date` });
  const rows = Array.from({ length: 5_000 }, (_, i) => ({
    event_date: new Date(Date.now() - (i % 20) * 86_400_000).toISOString().slice(0, 10),
    destination: ['Lisbon', 'Kyiv', 'Tokyo', 'Cancún', 'Dubai'][i % 5 === 4 ? 4 : i % 3], user_id: i % 700,
  }));
  await ch.insert({ table: `${chDb}.searches`, values: rows, format: 'JSONEachRow' });

  bq = await startBigQueryEmulator({ tables: sandboxBigQueryTables({ projects: 3_000 }) });
  yespo = await startYespoFake({ groups: { '1001': { apiKey: YESPO_KEYS.OVAGO, contacts: 1_234 }, '2002': { apiKey: YESPO_KEYS.brand_b, contacts: 2_345 } } });

  // Every dataset under a unique prefix; ClickHouse reads this file's own database.
  const seeds = pipelineSeeds.map((p) => {
    const c = structuredClone(p.config) as { datasets?: { dataset: string; sql: string }[]; dataset: string; ratePerSec?: number };
    if (Array.isArray(c.datasets)) {
      for (const d of c.datasets) {
        d.dataset = ds(d.dataset);
        d.sql = d.sql.replace('analytics.searches', `${chDb}.searches`);
      }
    } else c.dataset = ds(c.dataset);
    if (c.ratePerSec) c.ratePerSec = 50;
    return { ...p, config: c };
  });
  db = await freshDatabase(seeds);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const config = loadConfig({
    DATABASE_URL: db.url, REDIS_URL, CLICKHOUSE_URL: chUrl, YESPO_BASE_URL: yespo.url, SANDBOX_BIGQUERY_URL: bq.url,
  });
  services = createServices({
    config, db, redis, log: silentLog,
    env: {
      ETL_CRED_CLICKHOUSE: JSON.stringify({ username: 'default', password: '' }),
      ETL_CRED_YESPO_OVAGO: JSON.stringify({ apiKey: YESPO_KEYS.OVAGO }),
      ETL_CRED_YESPO_BRAND_B: JSON.stringify({ apiKey: YESPO_KEYS.brand_b }),
    },
  });
  platform = await startPlatform({ db, redis, services, registry: defaultRegistry(), cachePrefix: prefix });
  ({ engine } = platform);
}, 120_000);

afterAll(async () => {
  await platform?.stop();
  redis?.disconnect();
  await db?.drop();
  await ch?.command({ query: `DROP DATABASE IF EXISTS ${chDb}` }).catch(() => {});
  await ch?.close();
  await bq?.close();
  await yespo?.close();
});

async function runToEnd(pipelineId: string, expected: 'succeeded' | 'failed' = 'succeeded') {
  const { runId } = await engine.trigger(pipelineId);
  return waitForRun(runId, expected);
}
async function waitForRun(runId: string, expected: string) {
  const row = await waitFor(async () => {
    const r = (await db.pool.query('select status, error from etl_runs where id = $1', [runId])).rows[0];
    return r && ['succeeded', 'failed', 'cancelled'].includes(r.status) ? r : null;
  }, { timeoutMs: 60_000, what: `run ${runId} to finish` });
  expect(row.status, row.error ?? '').toBe(expected);
  const steps = (await db.pool.query('select key, status, rows_in, rows_out, error, output from etl_run_steps where run_id = $1 order by position', [runId])).rows;
  return { runId, error: row.error as string | null, steps };
}
const meta = async (name: string) => JSON.parse((await redis.get(`${key(name)}:meta`))!);

describe('the five pipelines, end to end', () => {
  it('bq.reference: three BigQuery tables into three Redis hashes', async () => {
    const { runId, steps } = await runToEnd('bq.reference');
    expect(steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(await redis.hlen(key('bq:reference:countries'))).toBe(20);
    expect(await redis.hlen(key('bq:reference:airports'))).toBe(1_500);
    expect(await redis.hlen(key('bq:reference:airlines'))).toBeGreaterThan(100);
    expect(JSON.parse((await redis.hget(key('bq:reference:countries'), 'UA'))!)).toEqual({ code: 'UA', name: 'Ukraine', region: 'Europe', currency: 'UAH' });
    expect(await meta('bq:reference:countries')).toMatchObject({ runId, pipelineId: 'bq.reference', rows: 20 });
    expect(steps[0].output.sandbox).toBe(true);
  });

  it('overlapped steps on a worker with one slot run to the end (the hand-back itself: steps/stream.test.ts)', async () => {
    const queueName = uid('one');
    const worker = await startWorkerRuntime({ db, redisUrl: REDIS_URL, queueName, registry: defaultRegistry(), services, log: silentLog, concurrency: 1 });
    const one = createEngine({ db, redis, queueName, registry: defaultRegistry(), log: silentLog });
    try {
      const { runId } = await one.trigger('bq.reference');
      const { steps } = await waitForRun(runId, 'succeeded');
      expect(steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
      expect((await meta('bq:reference:countries')).runId).toBe(runId);
    } finally {
      await worker.close(1_000);
      await one.queue.obliterate({ force: true }).catch(() => {});
      await one.close();
    }
  });

  it('bq.projects: upserted into Postgres without duplicates on re-run, and published to Redis', async () => {
    const first = await runToEnd('bq.projects');
    const count = async () => (await db.pool.query('select count(*)::int as n, count(distinct project_id)::int as d from bq_projects')).rows[0];
    expect(await count()).toEqual({ n: 3_000, d: 3_000 });
    const row = (await db.pool.query(`select * from bq_projects where project_id = 'prj-000042'`)).rows[0];
    expect(row).toMatchObject({ name: expect.stringContaining('campaign 42'), status: 'active' });
    expect(row.created_at).toBeInstanceOf(Date);
    await runToEnd('bq.projects');
    expect(await count()).toEqual({ n: 3_000, d: 3_000 });
    expect(await redis.hlen(key('bq:projects'))).toBe(3_000);
    expect((await meta('bq:projects')).runId).not.toBe(first.runId);
  });

  it('ch.top_dests: a real ClickHouse aggregate into an ordered JSON array', async () => {
    const { steps } = await runToEnd('ch.top_dests');
    const top = JSON.parse((await redis.get(key('ch:top_dests')))!) as { destination: string; searches: number; users: number }[];
    expect(top.map((t) => t.destination).sort()).toEqual(["Dubai", "Kyiv", "Lisbon", "Tokyo"]);
    expect(top.map((t) => t.searches)).toEqual([...top.map((t) => t.searches)].sort((a, b) => b - a));
    expect(top.reduce((n, t) => n + t.searches, 0)).toBe(5_000);
    expect(typeof top[0].searches).toBe('number'); // UInt64 arrives as a string; the transform made it a number
    expect(steps[0].output.sandbox).toBe(false);
  });

  it('a failed run (bad rows, or an empty result) leaves the published dataset byte-for-byte unchanged', async () => {
    const before = { value: await redis.dump(key('ch:top_dests')), meta: await redis.get(`${key('ch:top_dests')}:meta`) };
    const original = (await db.pool.query(`select config from etl_pipelines where id = 'ch.top_dests'`)).rows[0].config;
    const bad = structuredClone(original);
    bad.datasets[0].columns.searches = 'boolean';
    await updatePipeline(db.pool, 'ch.top_dests', { config: bad });
    const failed = await runToEnd('ch.top_dests', 'failed');
    expect(failed.steps[1].error).toMatch(/\d+ rows? rejected, over the limit of 0 .*first: top_dests row 1\b.*field "searches"/);
    const empty = structuredClone(original);
    empty.datasets[0].sql = empty.datasets[0].sql.replace('WHERE', 'WHERE 1 = 0 AND');
    await updatePipeline(db.pool, 'ch.top_dests', { config: empty });
    const refused = await runToEnd('ch.top_dests', 'failed');
    const [writeLog] = (await listStepEvents(db.pool, refused.runId, 'write'))!;
    expect(writeLog.events.find((e) => e.type === 'check')).toMatchObject({ data: { passed: false, check: 'row_count', rows: 0 } });
    expect(refused.steps[2].error).toMatch(/0 rows/);
    await updatePipeline(db.pool, 'ch.top_dests', { config: original });
    expect(await redis.dump(key('ch:top_dests'))).toEqual(before.value);
    expect(await redis.get(`${key('ch:top_dests')}:meta`)).toBe(before.meta);
    expect(await redis.keys(`${key('ch:top_dests')}:tmp:*`)).toEqual([]);
  });

  it('yespo.OVAGO: every contact in a Redis hash keyed by contact id', async () => {
    const { steps } = await runToEnd('yespo.OVAGO');
    expect(await redis.hlen(key('yespo:OVAGO:contacts'))).toBe(1_234);
    const some = JSON.parse((await redis.hget(key('yespo:OVAGO:contacts'), (await redis.hkeys(key('yespo:OVAGO:contacts')))[7]))!);
    expect(some).toMatchObject({ id: expect.any(Number), email: expect.stringContaining('@') });
    expect(steps[0].output).toMatchObject({ chunks: 3, rows: 1_234 });
    expect(JSON.stringify(steps)).not.toContain(YESPO_KEYS.OVAGO);
  });

  it('yespo.brand_b: a failure on page 4 resumes at page 4; no checkpointed page is fetched twice', async () => {
    yespo.requests.length = 0;
    yespo.setFaults({ rules: [{ type: 'status', status: 401, groupId: '2002', startindex: 1_501, times: 1 }] });
    const failed = await runToEnd('yespo.brand_b', 'failed');
    expect(failed.steps[0]).toMatchObject({ status: 'failed' });
    expect(failed.steps[0].error).toMatch(/401/);
    expect(failed.error).not.toContain(YESPO_KEYS.brand_b);
    await engine.resume(failed.runId);
    await waitForRun(failed.runId, 'succeeded');
    const starts = yespo.requests.filter((r) => r.groupId === '2002').map((r) => `${r.startindex}:${r.status}`);
    expect(starts).toEqual(['1:200', '501:200', '1001:200', '1501:401', '1501:200', '2001:200']);
    expect(await redis.hlen(key('yespo:brand_b:contacts'))).toBe(2_345);
  });

  it('event log: a Yespo run over 5 pages has 5 page events with their startindex, and a 429 its rate_limited wait', async () => {
    yespo.setFaults({ rules: [{ type: 'rateLimit', retryAfterSeconds: 1, groupId: '2002', startindex: 1_001, times: 1 }] });
    const { runId } = await runToEnd('yespo.brand_b');
    yespo.setFaults({ rules: [] });
    const [paginate] = (await listStepEvents(db.pool, runId, 'paginate'))!;
    const pages = paginate.events.filter((e) => e.type === 'page');
    expect(pages.map((e) => e.data!['startindex'])).toEqual([1, 501, 1001, 1501, 2001]);
    expect(pages.map((e) => e.data!['rows'])).toEqual([500, 500, 500, 500, 345]);
    expect(pages.every((e) => typeof e.data!['ms'] === 'number' && !Number.isNaN(Date.parse(e.at)))).toBe(true);
    const limited = paginate.events.filter((e) => e.type === 'rate_limited');
    expect(limited).toEqual([expect.objectContaining({ data: { startindex: 1001, waitMs: 1_000, retryAfterMs: 1_000 } })]);
    // rate_limited comes between page 2 and page 3
    expect(paginate.events.map((e) => e.type).slice(0, 4)).toEqual(['page', 'page', 'rate_limited', 'page']);
    const [write] = (await listStepEvents(db.pool, runId, 'write'))!;
    expect(write.events.map((e) => e.type)).toEqual(['check', 'published']);
    expect(JSON.stringify([paginate, write])).not.toContain(YESPO_KEYS.brand_b);
  });

  it('event log: a query pipeline stages, checks and publishes', async () => {
    const { runId } = await runToEnd('ch.top_dests');
    const types = async (step: string) => (await listStepEvents(db.pool, runId, step))![0].events.map((e) => e.type);
    expect(await types('fetch')).toEqual(['staged']);
    expect(await types('transform')).toEqual(['staged']);
    expect(await types('write')).toEqual(['check', 'published']);
    const [write] = (await listStepEvents(db.pool, runId, 'write'))!;
    expect(write.events[1].data).toMatchObject({ keys: [key('ch:top_dests'), `${key('ch:top_dests')}:meta`] });
  });
});
