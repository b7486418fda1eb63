import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { updatePipeline } from '../db/pipelines';
import { listRejects } from '../db/rejects';
import { startYespoFake, type YespoFake } from '../sandbox/yespo-fake';
import { createServices, type Services } from '../steps/services';
import type { Engine } from '../workflows/engine/engine';
import { defaultRegistry, pipelineSeeds } from '../workflows/index';
import { startPlatform, type Platform } from './platform';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

/**
 * Bad rows (SPEC §10) end to end: Yespo brand_b (2,345 contacts, 5 pages of 500) with 3
 * malformed contacts, through the engine, the fake and real Redis and Postgres.
 */
const prefix = uid('br');
const KEY = `brandb-key-${uid('k')}`;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let redis: Redis;
let yespo: YespoFake;
let services: Services;
let engine: Engine;
let platform: Platform | undefined;

const dataset = `${prefix}:yespo:brand_b:contacts`;
const key = `cache:${dataset}`;
// Fake indexes are 0-based (served at startindex index + 1): rows 18, 1,203 and 2,345.
const MALFORMED = [
  { index: 17, kind: 'idString' as const },
  { index: 1_202, kind: 'missingChannels' as const },
  { index: 2_344, kind: 'replace' as const, value: { id: 9, channels: 'nope', apiKey: 'sk_live_abcdefghijklmnop' } },
];

beforeAll(async () => {
  yespo = await startYespoFake({ groups: { '2002': { apiKey: KEY, contacts: 2_345 } } });
  const seeds = pipelineSeeds.filter((p) => p.id === 'yespo.brand_b').map((p) => ({
    ...p, config: { ...p.config, dataset, ratePerSec: 50 },
  }));
  db = await freshDatabase(seeds);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const config = loadConfig({ DATABASE_URL: db.url, REDIS_URL, YESPO_BASE_URL: yespo.url });
  services = createServices({ config, db, redis, log: silentLog, env: { ETL_CRED_YESPO_BRAND_B: JSON.stringify({ apiKey: KEY }) } });
  platform = await startPlatform({ db, redis, services, registry: defaultRegistry(), cachePrefix: prefix });
  ({ engine } = platform);
}, 120_000);

afterAll(async () => {
  await platform?.stop();
  redis?.disconnect();
  await db?.drop();
  await yespo?.close();
});

async function setBadRows(badRows: unknown) {
  const { config } = (await db.pool.query(`select config from etl_pipelines where id = 'yespo.brand_b'`)).rows[0];
  await updatePipeline(db.pool, 'yespo.brand_b', { config: { ...config, badRows } });
}

async function waitForRun(runId: string, expected: string) {
  const row = await waitFor(async () => {
    const r = (await db.pool.query('select status, error from etl_runs where id = $1', [runId])).rows[0];
    return r && ['succeeded', 'failed', 'cancelled'].includes(r.status) ? r : null;
  }, { timeoutMs: 60_000, what: `run ${runId} to finish` });
  expect(row.status, row.error ?? '').toBe(expected);
  const steps = (await db.pool.query('select key, status, rows_in, rows_out, rows_rejected, error from etl_run_steps where run_id = $1 order by position', [runId])).rows;
  return { runId, error: row.error as string | null, steps };
}

describe('bad rows: Yespo with 3 malformed contacts among 2,345', () => {
  it('badRows.max 5: succeeds with 2,342 contacts and 3 samples whose rows match', async () => {
    yespo.setFaults({ malformed: MALFORMED });
    await setBadRows({ max: 5 });
    const { runId } = await engine.trigger('yespo.brand_b');
    const { steps } = await waitForRun(runId, 'succeeded');
    expect(await redis.hlen(key)).toBe(2_342);
    expect(JSON.parse((await redis.get(`${key}:meta`))!)).toMatchObject({ runId, rows: 2_342 });
    expect(steps[0]).toMatchObject({ key: 'paginate', rows_in: 2_345, rows_out: 2_342, rows_rejected: 3 });
    const r = (await listRejects(db.pool, runId, 'paginate'))!;
    expect(r.rowsRejected).toBe(3);
    expect(r.rejects.map((x) => [x.row, x.page, x.path])).toEqual([[18, 1, 'id'], [1_203, 3, 'channels'], [2_345, 5, 'channels']]);
    expect(r.rejects[0].reason).toMatch(/row 18 \(id "abc"\): id: /);
    // The value is the row as sent, with secrets redacted.
    expect(r.rejects[0].value).toContain('"id":"abc"');
    expect(r.rejects[2].value).not.toContain('sk_live_abcdefghijklmnop');
    expect(r.rejects[2].value).toContain('[redacted]');
  });

  it('badRows.max 2: fails naming the count and leaves the dataset untouched; raised to 3, a resume fetches no page again', async () => {
    const before = { value: await redis.dump(key), meta: await redis.get(`${key}:meta`) };
    yespo.setFaults({ malformed: MALFORMED });
    await setBadRows({ max: 2 });
    yespo.requests.length = 0;
    const { runId } = await engine.trigger('yespo.brand_b');
    const failed = await waitForRun(runId, 'failed');
    expect(failed.steps[0]).toMatchObject({ status: 'failed', rows_rejected: 3 });
    expect(failed.steps[0].error).toMatch(/3 rows rejected, over the limit of 2 .*first: malformed Yespo contact at row 18 /);
    expect(failed.steps[0].error).not.toContain(KEY);
    expect(failed.steps.slice(1).map((s) => s.status)).not.toContain('succeeded');
    expect(await redis.dump(key)).toEqual(before.value);
    expect(await redis.get(`${key}:meta`)).toBe(before.meta);
    // Failed on the last page, after checkpointing it.
    expect(yespo.requests.map((q) => q.startindex)).toEqual([1, 501, 1001, 1501, 2001]);
    expect((await listRejects(db.pool, runId, 'paginate'))!.rejects.map((x) => x.row)).toEqual([18, 1_203, 2_345]);

    // The operator accepts the rejects: raise the limit, resume. No page is fetched again.
    await setBadRows({ max: 3 });
    yespo.requests.length = 0;
    await engine.resume(runId);
    const done = await waitForRun(runId, 'succeeded');
    expect(yespo.requests).toEqual([]);
    expect(done.steps[0]).toMatchObject({ rows_rejected: 3 });
    expect(await redis.hlen(key)).toBe(2_342);
    expect(JSON.parse((await redis.get(`${key}:meta`))!).runId).toBe(runId);
  });

  it('a failure on page 1 (default max 0) resumes on page 2 once the limit is raised', async () => {
    yespo.setFaults({ malformed: MALFORMED });
    await setBadRows({ max: 0 });
    yespo.requests.length = 0;
    const { runId } = await engine.trigger('yespo.brand_b');
    const failed = await waitForRun(runId, 'failed');
    expect(failed.steps[0].error).toMatch(/1 row rejected, over the limit of 0 .*row 18 /);
    expect(yespo.requests.map((q) => q.startindex)).toEqual([1]);
    await setBadRows({ max: 5 });
    yespo.requests.length = 0;
    await engine.resume(runId);
    const done = await waitForRun(runId, 'succeeded');
    expect(yespo.requests.map((q) => q.startindex)).toEqual([501, 1001, 1501, 2001]);
    expect(done.steps[0]).toMatchObject({ rows_in: 2_345, rows_out: 2_342, rows_rejected: 3 });
    expect((await listRejects(db.pool, runId, 'paginate'))!.rejects.map((x) => x.row)).toEqual([18, 1_203, 2_345]);
  });

  it('maxFraction decides at the end; legacy skipBadRows: true accepts any number', async () => {
    yespo.setFaults({ malformed: MALFORMED });
    // 3 of 2,345 is over 0.1 %: allowed = max(1, floor(2.345)) = 2.
    await setBadRows({ max: 1, maxFraction: 0.001 });
    const { runId } = await engine.trigger('yespo.brand_b');
    const failed = await waitForRun(runId, 'failed');
    expect(failed.steps[0].error).toMatch(/3 rows rejected of 2345, over the limit of 2 /);
    // Legacy skipBadRows: true (no badRows) means any number.
    const { config } = (await db.pool.query(`select config from etl_pipelines where id = 'yespo.brand_b'`)).rows[0];
    delete config.badRows;
    await updatePipeline(db.pool, 'yespo.brand_b', { config: { ...config, skipBadRows: true } });
    yespo.requests.length = 0;
    await engine.resume(runId);
    await waitForRun(runId, 'succeeded');
    expect(yespo.requests).toEqual([]);
  });
});
