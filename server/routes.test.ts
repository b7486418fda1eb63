import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRunDetail, getStepDetail } from '../db/read';
import * as runs from '../db/runs';
import { waitFor } from '../test/helpers';
import { Accepted, ErrorResponse, PipelineEnvelope, PipelineList, RunEnvelope, RunsPage, StepEnvelope, TickList } from './schemas';
import { createTestApp, demoSeed, type TestApp } from './testing';

/** Every /api/etl route of SPEC §6 through app.request, against real Postgres and Redis with a worker. */

const FAKE_SECRET = 'fake-cred-secret-9f8e7d6c5b';
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({
    seeds: [
      demoSeed('demo'), demoSeed('slow', { transformMs: 30_000 }), demoSeed('paged'), demoSeed('sandboxed'),
      demoSeed('with.secret', { apiKey: FAKE_SECRET, nested: { password: FAKE_SECRET }, table: 'ok' }),
    ],
  });
});
afterAll(async () => t?.close());
const api = (path: string) => `/api/etl${path}`;
const UNKNOWN_RUN = '00000000-0000-4000-8000-000000000000';

const triggerAndWait = (pipeline: string, status: string, body?: unknown) => t.triggerAndWait(pipeline, status, body);

describe('pipelines', () => {
  it('shows the tick log newest first: why did a scheduled run not happen', async () => {
    await t.h.db.pool.query(
      `insert into etl_schedule_ticks (pipeline_id, scheduled_for, outcome, detail) values
         ('paged', '2026-11-26T01:00:00Z', 'skipped_overlap', 'the previous run was still active'),
         ('paged', '2026-11-26T02:00:00Z', 'missed', 'missed while no scheduler ran (catch-up policy: none)'),
         ('paged', '2026-11-26T03:00:00Z', 'skipped_disabled', null)`);
    const r = await t.call('GET', api('/pipelines/paged/ticks?limit=2'));
    expect(r.status).toBe(200);
    const { ticks } = TickList.parse(r.body);
    expect(ticks.map((x) => [x.scheduledFor, x.outcome])).toEqual([
      ['2026-11-26T03:00:00.000Z', 'skipped_disabled'], ['2026-11-26T02:00:00.000Z', 'missed']]);
    const older = TickList.parse((await t.call('GET', api('/pipelines/paged/ticks?before=2026-11-26T02:00:00Z'))).body);
    expect(older.ticks.map((x) => x.detail)).toEqual(['the previous run was still active']);
    expect((await t.call('GET', api('/pipelines/nope/ticks'))).status).toBe(404);
  });

  it('lists pipelines with schedule, next fire time, sandbox flag, steps and last run', async () => {
    await triggerAndWait('demo', 'succeeded');
    const r = await t.call('GET', api('/pipelines'));
    expect(r.status).toBe(200);
    const { pipelines } = PipelineList.parse(r.body);
    expect(pipelines.map((p) => p.id)).toEqual(['demo', 'paged', 'sandboxed', 'slow', 'with.secret']);
    const demo = pipelines.find((p) => p.id === 'demo')!;
    expect(demo).toMatchObject({ cron: '* * * * *', timezone: 'UTC', enabled: false, sandbox: false, steps: ['fetch', 'transform', 'write'] });
    expect(Date.parse(demo.nextFireAt!)).toBeGreaterThan(Date.now() - 1_000);
    expect(demo.lastRun).toMatchObject({ pipelineId: 'demo', status: 'succeeded' });
    expect(demo.lastRun).not.toHaveProperty('steps');
    expect(pipelines.find((p) => p.id === 'sandboxed')!.sandbox).toBe(true);
    expect(pipelines.find((p) => p.id === 'paged')!.lastRun).toBeNull();
  });

  it('never returns credential-looking config values', async () => {
    const r = await t.call('GET', api('/pipelines/with.secret'));
    expect(r.status).toBe(200);
    expect(PipelineEnvelope.parse(r.body).pipeline.config).toEqual({ apiKey: '[redacted]', nested: { password: '[redacted]' }, table: 'ok' });
  });

  it('gets one pipeline, 404 for unknown or malformed ids', async () => {
    const r = await t.call('GET', api('/pipelines/demo'));
    expect(r.status).toBe(200);
    expect(PipelineEnvelope.parse(r.body).pipeline.id).toBe('demo');
    for (const id of ['nope', 'bad%20id', 'x'.repeat(101)]) {
      const n = await t.call('GET', api(`/pipelines/${id}`));
      expect(n.status).toBe(404);
      expect(ErrorResponse.parse(n.body).error.code).toBe('not_found');
    }
  });

  it('enables and disables; validates the body strictly', async () => {
    const on = await t.call('POST', api('/pipelines/paged/enable'), { body: { enabled: true } });
    expect(on.status).toBe(200);
    expect(PipelineEnvelope.parse(on.body).pipeline.enabled).toBe(true);
    const off = await t.call('POST', api('/pipelines/paged/enable'), { body: { enabled: false } });
    expect(off.body.pipeline.enabled).toBe(false);
    for (const body of [{ enabled: 'yes' }, { enabled: true, extra: 1 }, {}, undefined, [true]]) {
      const r = await t.call('POST', api('/pipelines/paged/enable'), { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    expect((await t.call('POST', api('/pipelines/nope/enable'), { body: { enabled: true } })).status).toBe(404);
  });

  it('changes the schedule; 400 invalid_cron / invalid_timezone', async () => {
    const r = await t.call('PUT', api('/pipelines/paged/cron'), { body: { cron: '30 3 * * *', timezone: 'Europe/Kyiv' } });
    expect(r.status).toBe(200);
    const p = PipelineEnvelope.parse(r.body).pipeline;
    expect(p).toMatchObject({ cron: '30 3 * * *', timezone: 'Europe/Kyiv' });
    expect(p.nextFireAt).toMatch(/T0[01]:30:00\.000Z$/);
    const badCron = await t.call('PUT', api('/pipelines/paged/cron'), { body: { cron: '61 * * * *', timezone: 'UTC' } });
    expect(badCron).toMatchObject({ status: 400, body: { error: { code: 'invalid_cron' } } });
    const badTz = await t.call('PUT', api('/pipelines/paged/cron'), { body: { cron: '0 * * * *', timezone: 'Mars/Olympus' } });
    expect(badTz).toMatchObject({ status: 400, body: { error: { code: 'invalid_timezone' } } });
    expect((await t.call('PUT', api('/pipelines/paged/cron'), { body: { cron: '0 * * * *' } })).status).toBe(400);
    expect((await t.call('PUT', api('/pipelines/nope/cron'), { body: { cron: '0 * * * *', timezone: 'UTC' } })).status).toBe(404);
    expect((await t.call('GET', api('/pipelines/paged'))).body.pipeline.cron).toBe('30 3 * * *');
  });
});

describe('runs list', () => {
  it('pages newest first with an opaque keyset cursor, ties broken by id', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = crypto.randomUUID();
      ids.push(id);
      await runs.insertRun(t.h.db.pool, {
        id, pipelineId: 'paged', trigger: 'manual', params: {}, exclusive: false, steps: [{ key: 'fetch', position: 0, status: 'pending' }],
      });
    }
    // Two runs share a timestamp: the cursor must still neither skip nor repeat one.
    await t.h.db.pool.query(`update etl_runs set created_at = '2026-01-01T00:00:00.123456Z' where id = any($1::uuid[])`, [ids.slice(1, 3)]);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const r = await t.call('GET', api(`/pipelines/paged/runs${q}`));
      expect(r.status).toBe(200);
      const page = RunsPage.parse(r.body);
      expect(page.runs.length).toBeLessThanOrEqual(2);
      seen.push(...page.runs.map((x) => x.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(new Set(seen)).toEqual(new Set(ids));
    const { rows } = await t.h.db.pool.query(`select id from etl_runs where pipeline_id = 'paged' order by created_at desc, id desc`);
    expect(seen).toEqual(rows.map((x) => x.id));
  });

  it('filters by status and validates limit, cursor and status', async () => {
    const q = await t.call('GET', api('/pipelines/paged/runs?status=queued'));
    expect(q.body.runs).toHaveLength(5);
    expect((await t.call('GET', api('/pipelines/paged/runs?status=succeeded'))).body).toEqual({ runs: [], nextCursor: null });
    expect((await t.call('GET', api('/pipelines/paged/runs'))).body.runs).toHaveLength(5);
    for (const qs of ['limit=0', 'limit=101', 'limit=abc', 'limit=1.5', 'cursor=zzz', 'status=done', 'foo=1', 'limit=1&limit=2']) {
      const r = await t.call('GET', api(`/pipelines/paged/runs?${qs}`));
      expect(r.status, qs).toBe(400);
      expect(r.body.error.code).toBe('invalid_input');
    }
    expect((await t.call('GET', api('/pipelines/nope/runs'))).status).toBe(404);
  });
});

describe('runs and actions', () => {
  it('triggers a run (empty body allowed) that succeeds, with the full drilldown', async () => {
    const r = await t.call('POST', api('/pipelines/demo/trigger'));
    expect(r.status).toBe(202);
    const { runId } = Accepted.parse(r.body);
    await t.h.waitRun(runId, 'succeeded');
    const d = await t.call('GET', api(`/runs/${runId}`));
    expect(d.status).toBe(200);
    const run = RunEnvelope.parse(d.body).run;
    expect(run).toMatchObject({ id: runId, pipelineId: 'demo', status: 'succeeded', trigger: 'manual', error: null, rows: { in: 3, out: 3 } });
    expect(run.steps.map((s) => [s.key, s.position, s.status, s.attempts])).toEqual([
      ['fetch', 0, 'succeeded', 1], ['transform', 1, 'succeeded', 1], ['write', 2, 'succeeded', 1],
    ]);
    expect(run.steps[1].attemptsHistory).toEqual([expect.objectContaining({ attempt: 1, status: 'succeeded', error: null })]);
    expect(Date.parse(run.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(run.startedAt!));
    const s = await t.call('GET', api(`/runs/${runId}/steps/transform`));
    expect(StepEnvelope.parse(s.body).step).toMatchObject({ key: 'transform', rowsIn: 3, rowsOut: 3, errorStack: null, output: { values: [10, 20, 30] } });
  });

  it('passes trigger params; rejects a bad trigger body', async () => {
    const runId = await triggerAndWait('demo', 'succeeded', { params: { note: 'ünï', n: [1, { a: null }] } });
    expect((await t.call('GET', api(`/runs/${runId}`))).body.run.params).toEqual({ note: 'ünï', n: [1, { a: null }] });
    for (const body of [{ params: 'x' }, { params: [] }, { other: 1 }, '{"params":']) {
      expect((await t.call('POST', api('/pipelines/demo/trigger'), { body })).status, JSON.stringify(body)).toBe(400);
    }
    expect((await t.call('POST', api('/pipelines/nope/trigger'))).status).toBe(404);
  });

  it('read queries answer null for ids that are not UUIDs, without reaching SQL', async () => {
    expect(await getRunDetail(t.h.db.pool, "x'; drop table etl_runs;--")).toBeNull();
    expect(await getStepDetail(t.h.db.pool, 'not-a-uuid', 'fetch')).toBeNull();
    expect(await getRunDetail(t.h.db.pool, UNKNOWN_RUN)).toBeNull();
  });

  it('404 for unknown or malformed run ids and step keys', async () => {
    for (const path of [`/runs/${UNKNOWN_RUN}`, '/runs/not-a-uuid', `/runs/${UNKNOWN_RUN}/steps/fetch`, `/runs/${UNKNOWN_RUN}/steps/Bad!`]) {
      expect((await t.call('GET', api(path))).status, path).toBe(404);
    }
    for (const path of [`/runs/${UNKNOWN_RUN}/resume`, `/runs/${UNKNOWN_RUN}/cancel`, `/runs/${UNKNOWN_RUN}/steps/fetch/retry`, '/runs/zzz/cancel']) {
      expect((await t.call('POST', api(path))).status, path).toBe(404);
    }
    expect((await t.call('POST', api(`/runs/${UNKNOWN_RUN}/rerun`), { body: { fromStep: 'fetch' } })).status).toBe(404);
  });

  it('retries a failed step (409 for a step that did not fail), and the run completes', async () => {
    await t.h.redis.set(`${t.h.prefix}:fail:transform`, '1');
    const runId = await triggerAndWait('demo', 'failed');
    const failed = (await t.call('GET', api(`/runs/${runId}`))).body.run;
    expect(failed.steps.map((s: { status: string }) => s.status)).toEqual(['succeeded', 'failed', 'pending']);
    expect(failed.error).toContain('transform told to fail');
    const step = (await t.call('GET', api(`/runs/${runId}/steps/transform`))).body.step;
    expect(step.attemptsHistory.map((a: { status: string }) => a.status)).toEqual(['failed', 'failed']);
    expect(step.errorStack).toContain('Error');
    // The first attempt's event log says the step was retried, why, and after how long.
    const logs = (await t.call('GET', api(`/runs/${runId}/steps/transform/events`))).body.attempts;
    expect(logs.map((a: { attempt: number }) => a.attempt)).toEqual([2, 1]);
    const retry = logs[1].events.find((e: { type: string }) => e.type === 'retry');
    expect(retry).toMatchObject({ data: { reason: expect.stringContaining('transform told to fail'), delayMs: expect.any(Number) } });
    expect(JSON.stringify(logs)).not.toContain('hunter2-secret');
    expect((await t.call('GET', api(`/runs/${runId}/steps/transform/events?attempt=1`))).body.attempts).toHaveLength(1);
    expect((await t.call('GET', api(`/runs/${runId}/steps/nope/events`))).status).toBe(404);
    expect((await t.call('GET', api(`/runs/${runId}/steps/transform/events?attempt=0`))).status).toBe(400);
    expect((await t.call('POST', api(`/runs/${runId}/steps/fetch/retry`))).body.error.code).toBe('step_not_failed');
    expect((await t.call('POST', api(`/runs/${runId}/steps/nope/retry`))).status).toBe(404);
    expect((await t.call('POST', api(`/runs/${runId}/steps/transform/retry`), { body: { force: 'yes' } })).status).toBe(400);
    await t.h.redis.del(`${t.h.prefix}:fail:transform`);
    const r = await t.call('POST', api(`/runs/${runId}/steps/transform/retry`));
    expect(r).toMatchObject({ status: 202, body: { runId } });
    await t.h.waitRun(runId, 'succeeded');
    expect(await t.h.execs(runId)).toEqual({ fetch: 1, transform: 3, write: 1 });
    expect((await t.call('POST', api(`/runs/${runId}/steps/transform/retry`))).status).toBe(409);
  });

  it('resumes a failed run; 409 once it succeeded', async () => {
    await t.h.redis.set(`${t.h.prefix}:fail:transform`, '1');
    const runId = await triggerAndWait('demo', 'failed');
    await t.h.redis.del(`${t.h.prefix}:fail:transform`);
    expect(await t.call('POST', api(`/runs/${runId}/resume`), { body: {} })).toMatchObject({ status: 202, body: { runId } });
    await t.h.waitRun(runId, 'succeeded');
    expect((await t.h.execs(runId)).fetch).toBe(1);
    expect(await t.call('POST', api(`/runs/${runId}/resume`))).toMatchObject({ status: 409, body: { error: { code: 'run_succeeded' } } });
  });

  it('reruns from a step into a new run; 409 without a checkpoint', async () => {
    const first = await triggerAndWait('demo', 'succeeded');
    const r = await t.call('POST', api(`/runs/${first}/rerun`), { body: { fromStep: 'transform' } });
    expect(r.status).toBe(202);
    const { runId } = Accepted.parse(r.body);
    expect(runId).not.toBe(first);
    await t.h.waitRun(runId, 'succeeded');
    const run = (await t.call('GET', api(`/runs/${runId}`))).body.run;
    expect(run).toMatchObject({ trigger: 'rerun', parentRunId: first });
    expect(await t.h.execs(runId)).toEqual({ fetch: 0, transform: 1, write: 1 });
    for (const body of [{}, { fromStep: 'Bad Step' }, { fromStep: 'transform', extra: 1 }]) {
      expect((await t.call('POST', api(`/runs/${first}/rerun`), { body })).status).toBe(400);
    }
    expect((await t.call('POST', api(`/runs/${first}/rerun`), { body: { fromStep: 'nope' } })).status).toBe(404);

    await t.h.redis.set(`${t.h.prefix}:fail:fetch`, '1');
    const broken = await triggerAndWait('demo', 'failed');
    await t.h.redis.del(`${t.h.prefix}:fail:fetch`);
    expect(await t.call('POST', api(`/runs/${broken}/rerun`), { body: { fromStep: 'write' } }))
      .toMatchObject({ status: 409, body: { error: { code: 'checkpoint_missing' } } });
  });

  it('409 run_active on a second trigger; cancels a running run; 409 once finished', async () => {
    const { runId } = Accepted.parse((await t.call('POST', api('/pipelines/slow/trigger'))).body);
    expect(await t.call('POST', api('/pipelines/slow/trigger'))).toMatchObject({ status: 409, body: { error: { code: 'run_active' } } });
    expect((await t.call('POST', api(`/runs/${runId}/resume`))).status).toBe(409);
    await waitFor(() => t.h.redis.exists(`${t.h.prefix}:started:${runId}:transform`), { what: 'transform to start' });
    expect(await t.call('POST', api(`/runs/${runId}/cancel`))).toMatchObject({ status: 202, body: { runId } });
    await t.h.waitRun(runId, 'cancelled');
    const run = (await t.call('GET', api(`/runs/${runId}`))).body.run;
    expect(run.steps.map((s: { status: string }) => s.status)).toEqual(['succeeded', 'cancelled', 'cancelled']);
    expect(await t.call('POST', api(`/runs/${runId}/cancel`))).toMatchObject({ status: 409, body: { error: { code: 'run_finished' } } });
  });
});

describe('secrets', () => {
  it('no log line and no response body contains the token, a session id or a credential', async () => {
    await t.call('GET', api('/events?token=wrong'), { auth: 'none' });
    await t.call('GET', api('/pipelines/with.secret'), { auth: 'cookie' });
    const haystack = [...t.logs, ...t.bodies].join('\n');
    expect(t.logs.length).toBeGreaterThan(20);
    expect(t.bodies.length).toBeGreaterThan(50);
    for (const secret of [t.token, t.sessionId, FAKE_SECRET, 'hunter2-secret']) expect(haystack).not.toContain(secret);
  });
});
