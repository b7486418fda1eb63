import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordTableSink } from '../db/datasets';
import { updatePipeline } from '../db/pipelines';
import { recordRejects } from '../db/rejects';
import * as runs from '../db/runs';
import { registerSecret } from '../lib/redact';
import { uid } from '../test/helpers';
import { longestCronGapSeconds } from '../workflows/freshness';
import { DatasetList, RejectList, RunEnvelope } from './schemas';
import { createTestApp, demoSeed, type TestApp } from './testing';

/** GET /runs/:runId/steps/:step/rejects (SPEC §10) and GET /datasets (SPEC §11). */

const p = uid('ds');
let t: TestApp;
const api = (path: string) => `/api/etl${path}`;

beforeAll(async () => {
  t = await createTestApp({
    startWorker: false,
    seeds: [
      demoSeed('a.fresh', { dataset: `${p}:fresh` }),
      demoSeed('b.failed', { dataset: `${p}:failed` }),
      demoSeed('c.disabled', { dataset: `${p}:disabled` }),
      demoSeed('d.never', { datasets: [{ dataset: `${p}:never`, shape: 'json' }] }),
      demoSeed('e.custom', { dataset: `${p}:custom`, freshness: { maxAgeSeconds: 7_200 } }),
      demoSeed('f.table', { postgres: { table: 'bq_projects' } }),
    ],
  });
});
afterAll(async () => {
  const keys = await t?.h.redis.keys(`cache:${p}:*`);
  if (keys?.length) await t.h.redis.del(...keys);
  await t?.close();
});

const ago = (s: number) => new Date(Date.now() - s * 1000).toISOString();
async function newRun(pipelineId: string, status: 'succeeded' | 'failed', error?: string) {
  const id = randomUUID();
  await runs.insertRun(t.h.db.pool, { id, pipelineId, trigger: 'manual', params: {}, exclusive: false, steps: [
    { key: 'fetch', position: 0, status: 'succeeded' }, { key: 'transform', position: 1, status: 'failed' }] });
  await t.h.db.pool.query('update etl_runs set status = $2, error = $3, finished_at = now() where id = $1', [id, status, error ?? null]);
  return id;
}
const meta = (dataset: string, runId: string, pipelineId: string, rows: number, updatedAt: string) =>
  t.h.redis.set(`cache:${dataset}:meta`, JSON.stringify({ runId, pipelineId, rows, updatedAt }));

describe('GET /runs/:runId/steps/:step/rejects', () => {
  it('lists the count and samples in source order, values redacted; rowsRejected on the step', async () => {
    const runId = await newRun('a.fresh', 'failed', 'transform: 3 rows rejected');
    registerSecret('sk_test_rejects_secret_123');
    await recordRejects(t.h.db.pool, { runId, stepKey: 'transform', total: 3, samples: [
      { dataset: 'x', row: 7, reason: 'x row 7: field "a": expected number', path: 'a', value: '{"a":"sk_test_rejects_secret_123"}' },
      { dataset: 'x', row: 2, page: 1, reason: 'x row 2: field "a": expected number', path: 'a', value: 'y'.repeat(5_000) },
    ] });
    const r = await t.call('GET', api(`/runs/${runId}/steps/transform/rejects`));
    expect(r.status).toBe(200);
    const body = RejectList.parse(r.body);
    expect(body.rowsRejected).toBe(3);
    expect(body.rejects.map((x) => [x.row, x.page, x.path])).toEqual([[2, 1, 'a'], [7, undefined, 'a']]);
    expect(body.rejects[0].value.length).toBeLessThanOrEqual(2_049);
    expect(r.text).not.toContain('sk_test_rejects_secret_123');
    expect((await t.call('GET', api(`/runs/${runId}/steps/transform/rejects?limit=1`))).body.rejects).toHaveLength(1);
    // Steps that validate nothing say 0.
    const { run } = RunEnvelope.parse((await t.call('GET', api(`/runs/${runId}`))).body);
    expect(run.steps.map((s) => [s.key, s.rowsRejected])).toEqual([['fetch', 0], ['transform', 3]]);
    expect((await t.call('GET', api(`/runs/${runId}/steps/fetch/rejects`))).body).toEqual({ rowsRejected: 0, rejects: [] });
  });

  it('404 for an unknown run or step or a malformed id, 400 for a bad query, never 500', async () => {
    const runId = await newRun('a.fresh', 'succeeded');
    for (const path of [`/runs/${randomUUID()}/steps/transform/rejects`, `/runs/${runId}/steps/nope/rejects`,
      '/runs/not-a-uuid/steps/transform/rejects', `/runs/${runId}/steps/BAD%20KEY/rejects`]) {
      const r = await t.call('GET', api(path));
      expect(r.status, path).toBe(404);
      expect(r.body.error.code).toBe('not_found');
    }
    for (const q of ['limit=0', 'limit=101', 'limit=abc', 'limit=1&limit=2', 'other=1', 'limit=%00']) {
      const r = await t.call('GET', api(`/runs/${runId}/steps/transform/rejects?${q}`));
      expect(r.status, q).toBe(400);
    }
    expect((await t.call('GET', api(`/runs/${runId}/steps/transform/rejects`), { auth: 'none' })).status).toBe(401);
  });
});

describe('GET /datasets', () => {
  it('fresh, stale (last run failed; pipeline disabled), never, custom maxAge, and a table', async () => {
    await updatePipeline(t.h.db.pool, 'a.fresh', { enabled: true });
    await updatePipeline(t.h.db.pool, 'b.failed', { enabled: true });
    await updatePipeline(t.h.db.pool, 'e.custom', { enabled: true });
    const okRun = await newRun('a.fresh', 'succeeded');
    await meta(`${p}:fresh`, okRun, 'a.fresh', 42, ago(10));
    const oldRun = await newRun('b.failed', 'succeeded');
    await meta(`${p}:failed`, oldRun, 'b.failed', 5, ago(3_600));
    const failedRun = await newRun('b.failed', 'failed', 'fetch: HTTP 500');
    await meta(`${p}:disabled`, randomUUID(), 'c.disabled', 9, ago(3_600));
    await meta(`${p}:custom`, randomUUID(), 'e.custom', 1, ago(3_600));
    const tableRun = await newRun('f.table', 'succeeded');
    await recordTableSink(t.h.db.pool, { table: 'bq_projects', pipelineId: 'f.table', runId: tableRun, rows: 3_000 });

    const r = await t.call('GET', api('/datasets'));
    expect(r.status).toBe(200);
    const by = Object.fromEntries(DatasetList.parse(r.body).datasets.map((d) => [d.dataset, d]));
    expect(by[`${p}:fresh`]).toMatchObject({
      key: `cache:${p}:fresh`, kind: 'hash', pipelineId: 'a.fresh', rows: 42, runId: okRun, status: 'fresh', maxAgeSeconds: 120,
    });
    expect(by[`${p}:fresh`].ageSeconds).toBeGreaterThanOrEqual(9);
    expect(by[`${p}:fresh`]).not.toHaveProperty('reason');
    expect(by[`${p}:failed`]).toMatchObject({ status: 'stale', runId: oldRun, reason: expect.stringContaining(`last run failed (${failedRun}): fetch: HTTP 500`) });
    expect(by[`${p}:failed`].ageSeconds).toBeGreaterThan(3_500);
    expect(by[`${p}:disabled`]).toMatchObject({ status: 'stale', reason: expect.stringContaining('pipeline disabled') });
    expect(by[`${p}:never`]).toMatchObject({
      kind: 'string', status: 'never', rows: null, runId: null, updatedAt: null, ageSeconds: null, reason: expect.stringMatching(/^never published; .*no run yet/),
    });
    expect(by[`${p}:custom`]).toMatchObject({ status: 'fresh', maxAgeSeconds: 7_200 });
    expect(by.bq_projects).toMatchObject({ kind: 'table', key: 'bq_projects', pipelineId: 'f.table', rows: 3_000, runId: tableRun });

    const stale = DatasetList.parse((await t.call('GET', api('/datasets?status=stale'))).body).datasets;
    expect(stale.map((d) => d.dataset).sort()).toEqual([`${p}:disabled`, `${p}:failed`]);
    expect(DatasetList.parse((await t.call('GET', api('/datasets?pipelineId=d.never'))).body).datasets).toHaveLength(1);
    for (const q of ['status=old', 'pipelineId=%2F..', 'x=1', 'status=fresh&status=stale']) {
      expect((await t.call('GET', api(`/datasets?${q}`))).status, q).toBe(400);
    }
  });

  it('maxAgeSeconds defaults to twice the longest gap between fire times over the next week', () => {
    expect(longestCronGapSeconds('*/30 * * * *', 'Europe/Kyiv')).toBe(1_800);
    expect(longestCronGapSeconds('0 3 * * *', 'UTC')).toBe(86_400);
    // Weekdays at 09:00: the weekend gap (Fri 09:00 → Mon 09:00) is the longest.
    expect(longestCronGapSeconds('0 9 * * 1-5', 'UTC')).toBe(3 * 86_400);
    expect(longestCronGapSeconds('0 0 1 * *', 'UTC')).toBeGreaterThanOrEqual(28 * 86_400);
  });

  it('/metrics has etl_dataset_age_seconds and etl_dataset_stale per dataset', async () => {
    const r = await t.call('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.text).toMatch(new RegExp(`etl_dataset_age_seconds\\{dataset="${p}:fresh"\\} \\d+`));
    expect(r.text).toContain(`etl_dataset_stale{dataset="${p}:fresh"} 0`);
    expect(r.text).toContain(`etl_dataset_stale{dataset="${p}:failed"} 1`);
    expect(r.text).toContain(`etl_dataset_age_seconds{dataset="${p}:never"} -1`);
  });
});
