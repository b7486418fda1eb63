import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../db/read';
import { silentLog } from '../test/helpers';
import { createApp } from './app';
import { signSessionId } from './session';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from './testing';

/**
 * SPEC §7 as issue 13 tightened it: operator roles, session expiry, SP0's signed cookies,
 * the audit trail and `triggeredBy`, and the query and metrics holes a review found. Each
 * `finding:` test failed before its fix.
 */

const SECRET = 'sp0-cookie-secret-for-tests-0123456789';
let t: TestApp;
let signedApp: ReturnType<typeof createApp>;

beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('demo'), demoSeed('other')], deps: {} });
  signedApp = createApp({
    db: t.h.db, redis: t.h.redis, engine: t.h.engine, log: silentLog,
    config: { apiToken: t.token, sessionCookie: SESSION_COOKIE, sessionSecret: SECRET, operatorRoles: ['admin', 'etl-operator'] },
  });
});
afterAll(async () => t?.close());

const api = (p: string) => `/api/etl${p}`;
const session = (user: unknown, extra: Record<string, unknown> = {}) => t.addSession(JSON.stringify({ user, ...extra }));
const asCookie = (value: string, method = 'GET', path = '/pipelines', body?: unknown, app = t.app) =>
  app.request(api(path), {
    method,
    headers: { cookie: `${SESSION_COOKIE}=${value}`, origin: 'http://localhost', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const enable = (sid: string, app = t.app) => asCookie(sid, 'POST', '/pipelines/other/enable', { enabled: false }, app);

describe('roles (finding: any session with a user object, even {}, could change everything)', () => {
  it('a session without an operator role reads but gets 403 forbidden on every state change', async () => {
    const { runId } = await t.h.engine.trigger('demo');
    for (const user of [{}, { id: 'v1' }, { id: 'v2', role: 'viewer' }, { id: 'v3', roles: ['viewer', 'ADMIN'] }, { id: 'v4', role: ['admin'] }]) {
      const sid = await session(user);
      expect((await asCookie(sid)).status, JSON.stringify(user)).toBe(200);
      const me = await (await asCookie(sid, 'GET', '/me')).json();
      expect(me).toMatchObject({ operator: false, operatorRoles: ['admin'] });
      for (const [method, path, body] of [
        ['POST', '/pipelines/demo/trigger', {}], ['POST', '/pipelines/demo/enable', { enabled: true }],
        ['PUT', '/pipelines/demo/cron', { cron: '0 * * * *', timezone: 'UTC' }], [`POST`, `/runs/${runId}/cancel`, {}],
        ['POST', `/runs/${runId}/resume`, {}], ['POST', `/runs/${runId}/steps/fetch/retry`, {}], ['POST', `/runs/${runId}/rerun`, { fromStep: 'fetch' }],
        ['POST', '/runs/resume', { dryRun: true }], ['POST', '/alerts/test', {}],
      ] as const) {
        const r = await asCookie(sid, method, path, body);
        expect(r.status, `${JSON.stringify(user)} ${method} ${path}`).toBe(403);
        expect(await r.json()).toMatchObject({ error: { code: 'forbidden' } });
      }
    }
    await t.h.engine.cancel(runId).catch(() => {});
  });

  it('every mounted state-changing route is in the list above: a new one cannot slip past without a test', () => {
    // Reading events is reading (SPEC §7): any session may get an SSE ticket.
    const reads = new Set(['POST /api/etl/events/ticket']);
    const mutations = t.app.routes
      .filter((x) => !['GET', 'HEAD', 'ALL', 'OPTIONS'].includes(x.method) && x.path.startsWith('/api/etl/'))
      .map((x) => `${x.method} ${x.path}`).filter((x) => !reads.has(x));
    expect([...new Set(mutations)].sort()).toEqual([
      'POST /api/etl/alerts/test', 'POST /api/etl/pipelines/:id/enable', 'POST /api/etl/pipelines/:id/trigger', 'POST /api/etl/runs/:runId/cancel',
      'POST /api/etl/runs/:runId/rerun', 'POST /api/etl/runs/:runId/resume', 'POST /api/etl/runs/:runId/steps/:step/retry', 'POST /api/etl/runs/resume',
      'PUT /api/etl/pipelines/:id/cron',
    ]);
  });

  it('role (string) or roles (array) in ETL_OPERATOR_ROLES makes an operator; the token is one', async () => {
    expect((await enable(await session({ id: 'a1', role: 'admin' }))).status).toBe(200);
    expect((await enable(await session({ id: 'a2', roles: ['viewer', 'admin'] }))).status).toBe(200);
    const custom = await session({ id: 'a3', roles: ['etl-operator'] });
    expect((await enable(custom)).status).toBe(403);
    expect((await enable(signSessionId(custom, SECRET), signedApp)).status).toBe(200);
    expect((await t.call('POST', api('/pipelines/other/enable'), { body: { enabled: false } })).status).toBe(200);
    expect((await t.call('GET', api('/me'))).body).toMatchObject({ actor: { kind: 'token' }, operator: true });
  });
});

describe('session expiry', () => {
  it('a session whose expiresAt / expires (ISO or epoch ms) is past is 401; a future one works', async () => {
    const past = Date.now() - 1_000;
    const future = Date.now() + 600_000;
    for (const extra of [{ expiresAt: new Date(past).toISOString() }, { expires: past }, { expires: String(past) },
      { expiresAt: 'not a time' }, { cookie: { expires: new Date(past).toISOString() } }, { expiresAt: future, expires: past }]) {
      const sid = await session({ id: 'e', role: 'admin' }, extra);
      expect((await asCookie(sid)).status, JSON.stringify(extra)).toBe(401);
    }
    for (const extra of [{ expiresAt: new Date(future).toISOString() }, { expires: future }]) {
      expect((await asCookie(await session({ id: 'f', role: 'admin' }, extra))).status, JSON.stringify(extra)).toBe(200);
    }
  });
});

describe('signed cookies (finding: SP0 signs its cookies, <id>.<sig>, which were always refused)', () => {
  it('accepts Fastify- and Express-signed cookies with SESSION_SECRET, refuses bad or foreign signatures', async () => {
    const sid = await session({ id: 's1', role: 'admin' });
    expect((await asCookie(signSessionId(sid, SECRET, 'fastify'), 'GET', '/pipelines', undefined, signedApp)).status).toBe(200);
    expect((await asCookie(signSessionId(sid, SECRET, 'express'), 'GET', '/pipelines', undefined, signedApp)).status).toBe(200);
    expect((await asCookie(`s:${signSessionId(sid, SECRET)}`, 'GET', '/pipelines', undefined, signedApp)).status).toBe(200);
    expect((await enable(signSessionId(sid, SECRET, 'express'), signedApp)).status).toBe(200);
    const foreign = signSessionId(sid, 'another-secret-entirely-0123456789');
    const sig = signSessionId(sid, SECRET).split('.')[1];
    const flipped = `${sid}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    for (const value of [foreign, flipped, `${sid}.`, `${sid}.${sig}=`, `s:${sid}`, `${sid}x.${sig}`, encodeURIComponent(`s:${foreign}`), '%E0%A4%A']) {
      expect((await asCookie(value, 'GET', '/pipelines', undefined, signedApp)).status, value).toBe(401);
    }
    // Without a secret a signed value cannot be checked: refused, not trusted.
    expect((await asCookie(signSessionId(sid, SECRET))).status).toBe(401);
    // A cookie plus a bad token is refused, not downgraded to the cookie.
    const both = await signedApp.request(api('/pipelines'), { headers: { cookie: `${SESSION_COOKIE}=${signSessionId(sid, SECRET)}`, authorization: 'Bearer nope-nope-nope-nope' } });
    expect(both.status).toBe(401);
  });
});

describe('audit trail (finding: nothing recorded who did it)', () => {
  it('records each state change with its actor; runs carry triggeredBy; GET /audit pages newest first', async () => {
    const sid = await session({ id: 'u-42', name: 'Olena', role: 'admin' });
    const trig = await asCookie(sid, 'POST', '/pipelines/demo/trigger', {});
    expect(trig.status).toBe(202);
    const { runId } = await trig.json() as { runId: string };
    await t.h.waitRun(runId, 'succeeded');
    const run = await t.call('GET', api(`/runs/${runId}`));
    expect(run.body.run.triggeredBy).toEqual({ kind: 'session', id: 'u-42', name: 'Olena' });
    const rerun = await t.call('POST', api(`/runs/${runId}/rerun`), { body: { fromStep: 'write' } });
    expect(rerun.status).toBe(202);
    expect((await t.call('GET', api(`/runs/${rerun.body.runId}`))).body.run.triggeredBy).toEqual({ kind: 'token', name: 'api token' });
    await t.h.waitRun(rerun.body.runId, 'succeeded');
    expect((await asCookie(sid, 'PUT', '/pipelines/other/cron', { cron: '5 * * * *', timezone: 'Europe/Kyiv' })).status).toBe(200);

    const page = await t.call('GET', api('/audit?limit=2'));
    expect(page.status).toBe(200);
    expect(page.body.entries).toMatchObject([
      { action: 'pipeline.cron', pipelineId: 'other', actor: { kind: 'session', id: 'u-42' }, details: { cron: '5 * * * *', timezone: 'Europe/Kyiv' } },
      { action: 'run.rerun', pipelineId: 'demo', runId: rerun.body.runId, actor: { kind: 'token' }, details: { fromRunId: runId, fromStep: 'write' } },
    ]);
    expect(page.body.nextCursor).toEqual(expect.any(String));
    const next = await t.call('GET', api(`/audit?limit=200&cursor=${page.body.nextCursor}`));
    expect(next.body.entries[0]).toMatchObject({ action: 'pipeline.trigger', pipelineId: 'demo', runId, actor: { kind: 'session', name: 'Olena' } });
    expect(next.body.entries.every((e: { id: number }) => e.id < page.body.entries[1].id)).toBe(true);
    // Viewers read the trail too; a refused action leaves no entry.
    const viewer = await session({ id: 'viewer' });
    const before = next.body.entries.length + 2;
    expect((await enable(viewer)).status).toBe(403);
    const all = await (await asCookie(viewer, 'GET', '/audit?limit=200')).json() as { entries: unknown[] };
    expect(all.entries.length).toBe(before);
  });
});

describe('query parameters stay in the range Postgres accepts (finding: before=-100000-01-01 answered 500)', () => {
  it('400 for out-of-range times and calendar-impossible cursors, never 500', async () => {
    for (const before of ['-100000-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', '10000-01-01T00:00:00Z', '0000-01-01T00:00:00Z', '-000001-01-01T00:00:00Z']) {
      const r = await t.call('GET', api(`/pipelines/demo/ticks?before=${encodeURIComponent(before)}`));
      expect(r.status, before).toBe(400);
    }
    expect((await t.call('GET', api('/pipelines/demo/ticks?before=2026-01-01T00:00:00Z'))).status).toBe(200);
    for (const at of ['2026-13-45T99:99:99.000000', '9999-99-99T00:00:00.000000', '0000-01-01T00:00:00.000000']) {
      const r = await t.call('GET', api(`/pipelines/demo/runs?cursor=${encodeCursor(at, '00000000-0000-0000-0000-000000000000')}`));
      expect(r.status, at).toBe(400);
    }
    for (const q of ['limit=0', 'limit=201', 'limit=x', `cursor=${Buffer.from('a:99999999999999999999').toString('base64url')}`, 'cursor=%00', 'cursor=abc', 'x=1']) {
      expect((await t.call('GET', api(`/audit?${q}`))).status, q).toBe(400);
    }
  });
});

describe('pipeline config (finding: a pipeline\'s credential name showed as [redacted])', () => {
  it('shows a credential name, hides secret-named fields and a credential object pasted in its place', async () => {
    await t.h.setConfig('other', { credential: 'yespo/OVAGO', apiKey: 'pasted-by-mistake', nested: { credentials: { password: 'x' } } });
    const r = await t.call('GET', api('/pipelines/other'));
    expect(r.body.pipeline.config).toEqual({ credential: 'yespo/OVAGO', apiKey: '[redacted]', nested: { credentials: '[redacted]' } });
  });
});

describe('/metrics (finding: unauthenticated)', () => {
  it('needs METRICS_TOKEN as a bearer token when it is set', async () => {
    const metricsToken = 'metrics-token-for-tests-0123456789';
    const app = createApp({ db: t.h.db, redis: t.h.redis, engine: t.h.engine, log: silentLog, config: { sessionCookie: SESSION_COOKIE, metricsToken } });
    expect((await app.request('/metrics')).status).toBe(401);
    expect((await app.request('/metrics', { headers: { authorization: 'Bearer wrong-wrong-wrong' } })).status).toBe(401);
    expect((await app.request('/metrics', { headers: { authorization: `Bearer ${metricsToken}` } })).status).toBe(200);
  });
});

describe('origin check behind nginx on a non-default port (finding: Host $host dropped the port)', () => {
  it('accepts the browser Origin when X-Forwarded-Host carries host:port, refuses a foreign one', async () => {
    const post = (headers: Record<string, string>) => t.app.request(api('/pipelines/other/enable'), {
      method: 'POST', body: '{"enabled":false}',
      headers: { cookie: `${SESSION_COOKIE}=${t.sessionId}`, 'content-type': 'application/json', ...headers },
    });
    expect((await post({ origin: 'http://etl.example:8080', host: 'etl.example', 'x-forwarded-host': 'etl.example:8080' })).status).toBe(200);
    expect((await post({ origin: 'http://evil.example:8080', host: 'etl.example', 'x-forwarded-host': 'etl.example:8080' })).status).toBe(403);
  });
});
