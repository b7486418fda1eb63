import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../db/client';
import { silentLog, waitFor } from '../test/helpers';
import { createApp } from './app';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from './testing';

/** Probes, metrics, access control (SPEC §7), protocol edges, the page and the OpenAPI document. */

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('demo'), demoSeed('paged')] });
});
afterAll(async () => t?.close());
const api = (path: string) => `/api/etl${path}`;

const triggerAndWait = (pipeline: string, status: string, body?: unknown) => t.triggerAndWait(pipeline, status, body);

describe('probes and metrics', () => {
  it('healthz and readyz are public and report both dependencies', async () => {
    expect(await t.call('GET', '/healthz', { auth: 'none' })).toMatchObject({ status: 200, body: { ok: true } });
    expect(await t.call('GET', '/readyz', { auth: 'none' })).toMatchObject({
      status: 200, body: { ok: true, checks: { postgres: 'ok', redis: 'ok' } },
    });
  });

  it('readyz is 503 and names the dependency that is down; a dead session store is a 503 for cookies', async () => {
    const deadDb = createDatabase('postgres://postgres@127.0.0.1:1/none');
    const deadRedis = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    deadRedis.on('error', () => {});
    const make = (db: typeof deadDb, redis: Redis) => createApp({
      db, redis, engine: t.h.engine, log: silentLog, config: { apiToken: t.token, sessionCookie: SESSION_COOKIE },
    });
    try {
      const both = await make(deadDb, deadRedis).request('/readyz');
      expect(both.status).toBe(503);
      expect(await both.json()).toEqual({ ok: false, checks: { postgres: 'down', redis: 'down' }, workers: null });
      const one = await make(t.h.db, deadRedis).request('/readyz');
      expect(await one.json()).toEqual({ ok: false, checks: { postgres: 'ok', redis: 'down' }, workers: null });
      const cookie = await make(t.h.db, deadRedis).request(api('/pipelines'), { headers: { cookie: `${SESSION_COOKIE}=${t.sessionId}` } });
      expect(cookie.status).toBe(503);
      expect(await cookie.json()).toMatchObject({ error: { code: 'session_store_unavailable' } });
      // A database error is a generic 500: no stack, no SQL, no connection string.
      const down = await make(deadDb, t.h.redis).request(api('/pipelines'), { headers: { authorization: `Bearer ${t.token}` } });
      expect(down.status).toBe(500);
      expect(await down.json()).toEqual({ error: { code: 'internal', message: 'internal server error' } });
    } finally {
      await deadDb.close();
      deadRedis.disconnect();
    }
  });

  it('serves Prometheus metrics from its own registry, counting runs from Postgres', async () => {
    await triggerAndWait('demo', 'succeeded');
    const r = await t.call('GET', '/metrics', { auth: 'none' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    expect(r.text).toMatch(/etl_runs\{pipeline="demo",status="succeeded"\} [1-9]/);
    expect(r.text).toMatch(/etl_steps\{status="succeeded"\} [1-9]/);
    expect(r.text).toMatch(/etl_queue_jobs\{state="completed"\} \d+/);
    expect(r.text).toContain('process_cpu_user_seconds_total');
    expect(r.text).toMatch(/http_requests_total\{method="GET",route="\/healthz",status="200"\} 1/);
    // Step durations come from live events.
    await waitFor(async () => /etl_step_duration_seconds_count\{pipeline="demo",step="write",outcome="succeeded"\} [1-9]/
      .test((await t.call('GET', '/metrics', { auth: 'none' })).text), { what: 'step duration samples' });
  });
});

describe('access (SPEC §7)', () => {
  it('401 without credentials, with a wrong token, or a token in the query outside /events', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-000000000000' }, { authorization: `Basic ${t.token}` },
      { authorization: `Bearer ${t.token}x` }, { cookie: `${SESSION_COOKIE}=nosuchsession123` }, { cookie: `other=${t.sessionId}` },
    ] as Record<string, string>[]) {
      const r = await t.call('GET', api('/pipelines'), { auth: 'none', headers });
      expect(r, JSON.stringify(headers)).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    }
    expect((await t.call('GET', api(`/pipelines?token=${t.token}`), { auth: 'none' })).status).toBe(401);
    expect((await t.call('GET', api('/openapi.json'), { auth: 'none' })).status).toBe(401);
    expect((await t.call('GET', api('/events'), { auth: 'none' })).status).toBe(401);
    expect((await t.call('GET', api('/nope'), { auth: 'none' })).status).toBe(401);
  });

  it('accepts a session cookie; rejects malformed sessions and odd ids', async () => {
    expect((await t.call('GET', api('/pipelines'), { auth: 'cookie' })).status).toBe(200);
    const bad = [
      await t.addSession('not json'), await t.addSession('{"user":null}'), await t.addSession('{"nouser":1}'),
      await t.addSession('{"user":"string"}'), await t.addSession('[1]'), await t.addSession('null'),
    ];
    for (const id of [...bad, 'short', 'has:colon:1234', '*', '../../x/y/z/w', 'a'.repeat(129)]) {
      const r = await t.call('GET', api('/pipelines'), { auth: 'none', headers: { cookie: `${SESSION_COOKIE}=${encodeURIComponent(id)}` } });
      expect(r.status, id).toBe(401);
    }
  });

  it('cookie mutations need a same-site Origin or Referer (403 csrf); token mutations do not', async () => {
    const enable = (headers: Record<string, string>, auth: 'cookie' | 'token' = 'cookie') =>
      t.call('POST', api('/pipelines/paged/enable'), { auth, headers, body: { enabled: false } });
    expect(await enable({})).toMatchObject({ status: 403, body: { error: { code: 'csrf' } } });
    expect((await enable({ origin: 'https://evil.example' })).status).toBe(403);
    expect((await enable({ origin: 'null' })).status).toBe(403);
    expect((await enable({ referer: 'https://evil.example/etl' })).status).toBe(403);
    expect((await enable({ origin: 'http://localhost' })).status).toBe(200);
    expect((await enable({ referer: 'http://localhost/etl/' })).status).toBe(200);
    expect((await enable({ origin: 'https://etl.example.com', 'x-forwarded-host': 'etl.example.com' })).status).toBe(200);
    expect((await enable({})).status).toBe(403);
    expect((await enable({}, 'token')).status).toBe(200);
    // Reads with a cookie need no Origin.
    expect((await t.call('GET', api('/pipelines/paged'), { auth: 'cookie' })).status).toBe(200);
  });

  it('honours allowedOrigins', async () => {
    const app = createApp({
      db: t.h.db, redis: t.h.redis, engine: t.h.engine, log: silentLog,
      config: { sessionCookie: SESSION_COOKIE, allowedOrigins: ['https://ops.example.com'] },
    });
    const post = (origin: string) => app.request(api('/pipelines/paged/enable'), {
      method: 'POST', body: '{"enabled":false}',
      headers: { origin, cookie: `${SESSION_COOKIE}=${t.sessionId}`, 'content-type': 'application/json' },
    });
    expect((await post('https://ops.example.com')).status).toBe(200);
    expect((await post('https://ops.example.com.evil.test')).status).toBe(403);
    // No token configured: no bearer token is accepted at all.
    expect((await app.request(api('/pipelines'), { headers: { authorization: 'Bearer ' } })).status).toBe(401);
  });
});

describe('protocol edges', () => {
  it('413 above 64 KB, 415 for a non-JSON body, 400 for malformed JSON, 404 JSON for unknown routes', async () => {
    const big = JSON.stringify({ params: { x: 'a'.repeat(70_000) } });
    expect(await t.call('POST', api('/pipelines/demo/trigger'), { body: big }))
      .toMatchObject({ status: 413, body: { error: { code: 'payload_too_large' } } });
    expect((await t.call('POST', api('/pipelines/demo/enable'), { body: 'enabled=true', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect(await t.call('POST', api('/pipelines/demo/enable'), { body: '{"enabled": tru' }))
      .toMatchObject({ status: 400, body: { error: { code: 'invalid_json' } } });
    expect(await t.call('GET', api('/nope'))).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect(await t.call('GET', '/nope', { auth: 'none' })).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect((await t.call('DELETE', api('/pipelines/demo'))).status).toBe(404);
  });

  it('serves the built page from a fixed list of files only', async () => {
    for (const [path, type] of [['/etl', 'text/html'], ['/etl/', 'text/html'], ['/etl/app.js', 'javascript'], ['/etl/styles.css', 'text/css'], ['/etl/app.js.map', 'json']]) {
      const r = await t.call('GET', path!, { auth: 'none' });
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type')).toContain(type);
    }
    expect((await t.call('GET', '/etl', { auth: 'none' })).text).toContain('/etl/app.js');
    for (const path of ['/etl/../package.json', '/etl/%2e%2e/package.json', '/etl/..%2fpackage.json', '/etl/index.html', '/etl/config.ts', '/etl/app.js/']) {
      expect((await t.call('GET', path, { auth: 'none' })).status, path).toBe(404);
    }
  });

  it('documents every mounted route in an OpenAPI 3.1 document built from the zod schemas', async () => {
    const r = await t.call('GET', api('/openapi.json'));
    expect(r.status).toBe(200);
    const doc = r.body as { openapi: string; paths: Record<string, Record<string, any>>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toBe('3.1.0');
    const mounted = t.app.routes
      .filter((x) => x.method !== 'ALL' && (x.path.startsWith('/api/etl/') || ['/healthz', '/readyz', '/metrics'].includes(x.path)))
      .map((x) => `${x.method} ${x.path.replace(/:(\w+)/g, '{$1}')}`);
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    expect(new Set(documented)).toEqual(new Set(mounted));
    // 19 before + GET /api/etl/workers, GET /me, POST /events/ticket, GET /audit
    // + GET /runs/{runId}/steps/{step}/events, POST /runs/resume + GET /alerts, POST /alerts/test
    expect(mounted).toHaveLength(26);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['Pipeline', 'Run', 'RunDetail', 'Step', 'StepDetail', 'Attempt', 'Error', 'StepEvent', 'BulkResumeResult']));
    expect(doc.paths['/api/etl/runs/resume'].post.requestBody.content['application/json'].schema.properties).toHaveProperty('dryRun');
    expect(doc.paths['/api/etl/runs/{runId}/steps/{step}/events'].get.parameters.map((p: { name: string }) => p.name)).toEqual(['runId', 'step', 'attempt']);
    const runs = doc.paths['/api/etl/pipelines/{id}/runs']!.get;
    expect(runs.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual(['path:id', 'query:limit', 'query:cursor', 'query:status']);
    expect(runs.responses['200'].content['application/json'].schema.properties.runs.items).toEqual({ $ref: '#/components/schemas/Run' });
    expect(doc.paths['/api/etl/pipelines/{id}/cron']!.put.requestBody.content['application/json'].schema.required).toEqual(['cron', 'timezone']);
    expect(JSON.stringify(doc)).not.toContain('$defs');
  });
});

describe('secrets', () => {
  it('no log line and no response body contains the token or the session id', async () => {
    await t.call('GET', api(`/events?token=${t.token}x`), { auth: 'none' });
    const haystack = [...t.logs, ...t.bodies].join('\n');
    expect(t.logs.length).toBeGreaterThan(10);
    for (const secret of [t.token, t.sessionId]) expect(haystack).not.toContain(secret);
  });
});
