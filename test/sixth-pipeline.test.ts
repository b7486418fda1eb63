import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { startSandbox, type Sandbox } from '../sandbox/index';
import { SANDBOX_YESPO_KEY, createServices, type Services } from '../steps/services';
import type { Engine } from '../workflows/engine/engine';
import { pipelines } from '../workflows/index';
import { createPipelines } from '../workflows/registry';
import { bqCampaigns } from './fixtures/bq-campaigns';
import { startPlatform, type Platform } from './platform';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

/**
 * Adding a pipeline is one file: the registry's list plus one fixture file is all this
 * test gives the platform. Seeds, the workflow registry, the sandbox's BigQuery table
 * (generated from the declared columns) and the sandbox label all follow from it.
 */
const all = createPipelines([...pipelines, bqCampaigns]);
const prefix = uid('six');
let db: Awaited<ReturnType<typeof freshDatabase>>;
let redis: Redis;
let sandbox: Sandbox;
let services: Services;
let engine: Engine;
let platform: Platform | undefined;

beforeAll(async () => {
  db = await freshDatabase(all.seeds.map((s) => s.id === 'bq.campaigns'
    ? { ...s, config: { ...s.config, datasets: (s.config.datasets as { dataset: string }[]).map((d) => ({ ...d, dataset: `${prefix}:${d.dataset}` })) } }
    : s));
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  sandbox = await startSandbox({ pipelines: all.list, yespoApiKey: SANDBOX_YESPO_KEY });
  const config = loadConfig({ DATABASE_URL: db.url, REDIS_URL, ...sandbox.env });
  services = createServices({ config, db, redis, log: silentLog, env: {} });
  platform = await startPlatform({ db, redis, services, registry: all.registry, cachePrefix: prefix });
  ({ engine } = platform);
}, 60_000);

afterAll(async () => {
  await platform?.stop();
  redis?.disconnect();
  await sandbox?.close();
  await db?.drop();
});

describe('a sixth pipeline defined in one file', () => {
  it('is seeded disabled, labelled sandbox, and runs end to end on data generated from its columns', async () => {
    const row = (await db.pool.query(`select workflow, cron, timezone, enabled, description from etl_pipelines where id = 'bq.campaigns'`)).rows[0];
    expect(row).toEqual({ workflow: 'bq-campaigns', cron: '45 5 * * *', timezone: 'Europe/Kyiv', enabled: false, description: 'BigQuery campaigns → Redis cache' });
    const src = all.sourceOf({ id: 'bq.campaigns', workflow: 'bq-campaigns', config: bqCampaigns.config });
    expect(src).toEqual({ credential: 'bigquery', kind: 'bigquery' });
    expect(await services.isSandboxed(src!.credential, src!.kind)).toBe(true);

    const { runId } = await engine.trigger('bq.campaigns');
    const run = await waitFor(async () => {
      const r = (await db.pool.query('select status, error from etl_runs where id = $1', [runId])).rows[0];
      return r && r.status !== 'queued' && r.status !== 'running' ? r : null;
    }, { timeoutMs: 60_000, what: 'the run to finish' });
    expect(run.status, run.error ?? '').toBe('succeeded');

    const key = `cache:${prefix}:bq:campaigns`;
    // The generated table has 1,000 rows (paged by 300 here), each keyed by its campaign_id.
    expect(await redis.hlen(key)).toBe(1_000);
    expect(JSON.parse((await redis.hget(key, 'campaign_id-000006'))!)).toEqual({
      campaign_id: 'campaign_id-000006', title: null, budget: null, clicks: 7, active: true, starts_at: null,
    });
    expect(JSON.parse((await redis.hget(key, 'campaign_id-000001'))!)).toEqual({
      campaign_id: 'campaign_id-000001', title: 'title-000001', budget: 13.8, clicks: 2, active: false,
      starts_at: new Date(Date.UTC(2025, 0, 1) + 3_600_000).toISOString(),
    });
    expect(JSON.parse((await redis.get(`${key}:meta`))!)).toMatchObject({ runId, pipelineId: 'bq.campaigns', rows: 1_000 });
  }, 90_000);
});
