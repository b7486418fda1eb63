import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signSessionId } from './session';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from './testing';

/**
 * Hostile input to every route: every answer is a 4xx JSON error without a stack, and
 * Postgres is byte-for-byte unchanged afterwards. No worker runs, so the only way the
 * database could change is a request that should have been refused.
 */

let t: TestApp;
const SECRET = 'hostile-test-cookie-secret-0123456789';
let runId: string;
let before: string;

async function snapshot(): Promise<string> {
  const { rows } = await t.h.db.pool.query(`select
    (select count(*) from etl_pipelines) as pipelines, (select count(*) from etl_runs) as runs,
    (select count(*) from etl_run_steps) as steps, (select count(*) from etl_step_attempts) as attempts,
    (select count(*) from etl_audit_log) as audit,
    (select md5(coalesce(string_agg(row_to_json(p)::text, '|' order by id), '')) from etl_pipelines p) as pipelines_hash,
    (select md5(coalesce(string_agg(row_to_json(r)::text, '|' order by id), '')) from etl_runs r) as runs_hash,
    (select md5(coalesce(string_agg(row_to_json(s)::text, '|' order by run_id, key), '')) from etl_run_steps s) as steps_hash`);
  return JSON.stringify(rows[0]);
}

beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('demo'), demoSeed('other')], startWorker: false, config: { sessionSecret: SECRET } });
  ({ runId } = await t.h.engine.trigger('demo')); // stays queued: no worker
  before = await snapshot();
});
afterAll(async () => t?.close());

const HOSTILE = [
  '../../etc/passwd', '..%2F..%2Fetc%2Fpasswd', "'; drop table etl_runs;--", "1' or '1'='1", '%00', 'demo%00', '\u0000', '%',
  '%zz', '%E0%A4%A', 'x'.repeat(5_000), 'пайплайн', '🚀🚀', '\u202eevil', '<script>alert(1)</script>', '${jndi:ldap://x/a}',
  ' ', 'DEMO', 'demo ', '__proto__', 'constructor', 'null', '-1', '1e309', '00000000-0000-0000-0000-00000000000g',
  `${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}'`, '\ud800', 'a/b', 'a?b=c', 'a#b', '😀'.repeat(200),
];
const enc = (s: string) => {
  if (/%/.test(s)) return s;
  try {
    return encodeURIComponent(s);
  } catch {
    return '%ED%A0%80'; // a lone surrogate has no UTF-8 encoding: send the raw invalid bytes
  }
};

/** Every route, with the slots a hostile value can go into (p: pipeline, r: run, s: step). */
const ROUTES: [string, string][] = [
  ['GET', '/api/etl/pipelines/{p}'], ['POST', '/api/etl/pipelines/{p}/trigger'], ['POST', '/api/etl/pipelines/{p}/enable'],
  ['PUT', '/api/etl/pipelines/{p}/cron'], ['GET', '/api/etl/pipelines/{p}/runs'], ['GET', '/api/etl/runs/{r}'],
  ['GET', '/api/etl/runs/{r}/steps/{s}'], ['POST', '/api/etl/runs/{r}/steps/{s}/retry'], ['POST', '/api/etl/runs/{r}/resume'],
  ['POST', '/api/etl/runs/{r}/rerun'], ['POST', '/api/etl/runs/{r}/cancel'], ['GET', '/api/etl/pipelines/{p}/ticks'],
  ['GET', '/api/etl/runs/{r}/steps/{s}/events'],
  ['GET', '/api/etl/runs/{r}/steps/{s}/rejects'],
];
const ALL_ROUTES: [string, string][] = [...ROUTES, ['GET', '/api/etl/pipelines'], ['GET', '/api/etl/events'], ['GET', '/api/etl/openapi.json'],
  ['GET', '/api/etl/audit'], ['GET', '/api/etl/me'], ['POST', '/api/etl/events/ticket'], ['POST', '/api/etl/runs/resume'],
  ['GET', '/api/etl/alerts'], ['POST', '/api/etl/alerts/test'], ['GET', '/api/etl/datasets']];
const VALID = { p: 'demo', r: () => runId, s: 'transform' };
const fill = (path: string, slot: string, value: string) =>
  path.replace(/\{([prs])\}/g, (_, k: 'p' | 'r' | 's') => (k === slot ? value : enc(typeof VALID[k] === 'function' ? VALID[k]() : VALID[k])));
// Bodies that are valid for their route, so the hostile value in the path is the only fault.
const VALID_BODY: Record<string, unknown> = {
  enable: { enabled: true }, cron: { cron: '0 * * * *', timezone: 'UTC' }, rerun: { fromStep: 'fetch' },
};
const validBody = (path: string) => VALID_BODY[path.split('/').pop()!] ?? {};

async function expectRefused(method: string, path: string, o: Parameters<TestApp['call']>[2] = {}) {
  const r = await t.call(method, path, o);
  const what = `${method} ${path.slice(0, 120)} ${JSON.stringify(o.body ?? '').slice(0, 80)}`;
  expect(r.status, what).toBeGreaterThanOrEqual(400);
  expect(r.status, what).toBeLessThan(500);
  expect(typeof r.body?.error?.code, what).toBe('string');
  expect(r.text, what).not.toMatch(/\n\s+at |node_modules|\.ts:\d+/);
  return r;
}

describe('hostile input never causes a 5xx or a change', () => {
  it('hostile ids in every path slot: 404 (or 4xx from URL normalisation)', async () => {
    for (const [method, template] of ROUTES) {
      for (const slot of ['p', 'r', 's'].filter((k) => template.includes(`{${k}}`))) {
        for (const h of HOSTILE) {
          const body = method === 'GET' ? undefined : validBody(template);
          await expectRefused(method, fill(template, slot, enc(h)), { body });
        }
      }
    }
  });

  it('hostile query strings: 400', async () => {
    const runsPath = '/api/etl/pipelines/demo/runs';
    const queries = [
      'limit=-1', 'limit=0', 'limit=101', 'limit=1e3', 'limit=99999999999999999999', 'limit=%00', 'limit=', 'limit=1%20',
      'limit=0x10', 'status=QUEUED', "status='%20or%201=1--", 'status=%3Cscript%3E', `cursor=${'A'.repeat(5_000)}`,
      'cursor=..%2F..%2Fetc', `cursor=${Buffer.from("2026-01-01T00:00:00.000000|'; drop table etl_runs;--").toString('base64url')}`,
      `cursor=${Buffer.from('2026-01-01T00:00:00.000000|00000000-0000-0000-0000-00000000000g').toString('base64url')}`,
      'cursor=%F0%9F%9A%80', 'limit=1&limit=2', '__proto__=1', 'constructor=1', 'x=' + 'y'.repeat(10_000),
    ];
    for (const q of queries) await expectRefused('GET', `${runsPath}?${q}`);
    for (const q of ['limit=0', 'limit=501', 'before=yesterday', "before='; drop table etl_runs;--", 'x=1', 'before=%00']) {
      await expectRefused('GET', `/api/etl/pipelines/demo/ticks?${q}`);
    }
    for (const [method, template] of ALL_ROUTES.filter(([, p]) => !p.endsWith('/events'))) {
      const path = fill(template, '', '');
      await expectRefused(method, `${path}?unknown=%3Cscript%3E`, { body: method === 'GET' ? undefined : validBody(template) });
    }
    for (const q of ['limit=0', 'limit=201', 'limit=-1', 'limit=1e2', `cursor=${'A'.repeat(100)}`, 'cursor=%00', "cursor='%20or%201=1",
      `cursor=${Buffer.from('a:-1').toString('base64url')}`, `cursor=${Buffer.from('a:1e308').toString('base64url')}`, 'limit=1&limit=2']) {
      await expectRefused('GET', `/api/etl/audit?${q}`);
    }
    for (const q of ['limit=0', 'limit=101', 'limit=-1', 'limit=1e2', 'limit=%00', 'limit=1&limit=2', "limit='%20or%201=1"]) {
      await expectRefused('GET', `/api/etl/runs/${runId}/steps/transform/rejects?${q}`);
    }
    for (const q of ['status=STALE', 'status=%00', "pipelineId='%20or%201=1--", 'pipelineId=' + 'p'.repeat(200), 'pipelineId=..%2F', 'status=a&status=b']) {
      await expectRefused('GET', `/api/etl/datasets?${q}`);
    }
    for (const q of ['before=-100000-01-01T00:00:00Z', 'before=%2B275760-09-13T00:00:00Z', 'before=10000-01-01']) {
      await expectRefused('GET', `/api/etl/pipelines/demo/ticks?${q}`);
    }
    await expectRefused('GET', `/api/etl/events?token=${'t'.repeat(600)}`);
    await expectRefused('GET', `/api/etl/events?ticket=${'t'.repeat(600)}`);
    await expectRefused('GET', '/api/etl/events?ticket=%00', { auth: 'none' });
    await expectRefused('GET', `/api/etl/events?token=${t.token}`, { auth: 'none' });
    await expectRefused('GET', '/api/etl/events?token=%00', { auth: 'none' });
  });

  it('malformed JSON, wrong types, prototype keys, deep nesting and bad characters: 4xx', async () => {
    const deep = `{"params":${'{"a":'.repeat(2_000)}1${'}'.repeat(2_000)}}`;
    const common: unknown[] = [
      '{', '{"enabled":', '[', 'nul', '{"a":1,}', "{'a':1}", '\u0000', '[]', 'null', '"str"', '123', 'true', '{"__proto__":{"x":1}}',
      '{"constructor":{"prototype":{"x":1}}}', deep, `[${'['.repeat(20_000)}${']'.repeat(20_000)}]`,
      { cron: "'; drop table etl_runs;--", timezone: '../../etc/passwd' }, { params: 'x' }, { params: [1, 2] },
      { params: { a: '\u0000' } }, { params: { 'a\u0000': 1 } }, { params: { a: '\ud800' } }, { params: { __proto__x: 1, b: { c: '\udfff' } } },
      { params: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, i])) }, { params: { ['k'.repeat(101)]: 1 } },
      { params: { a: 1 }, extra: true }, { enabled: 'true' }, { enabled: 1 }, { enabled: null }, { fromStep: 'Fetch' },
      { fromStep: '../../etc/passwd' }, { fromStep: 'x'.repeat(100) }, { fromStep: 1 },
    ];
    for (const [method, template] of ROUTES.filter(([m]) => m !== 'GET')) {
      const path = fill(template, '', '');
      for (const body of common) await expectRefused(method, path, { body });
      await expectRefused(method, path, { body: '{"x":1}', headers: { 'content-type': 'text/plain' } });
      await expectRefused(method, path, { body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    }
    const proto = await expectRefused('POST', '/api/etl/pipelines/demo/trigger', { body: '{"params":{"__proto__":{"polluted":1}}}' });
    expect(proto.body.error.code).toBe('invalid_body');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('bulk resume filters and event-log queries: 400; a dry run changes nothing', async () => {
    const bodies: unknown[] = [
      '{', '[]', 'null', '"x"', { status: 'failed' }, { status: ['succeeded'] }, { status: ['failed', 'failed', 'failed'] }, { status: [] },
      { status: ["failed' or 1=1--"] }, { since: 'yesterday' }, { since: '-100000-01-01T00:00:00Z' }, { until: '+275760-09-13T00:00:00Z' },
      { until: 'x'.repeat(5_000) }, { since: 1 }, { pipelineId: "'; drop table etl_runs;--" }, { pipelineId: '../../etc' },
      { pipelineId: 'x'.repeat(101) }, { pipelineId: '\u0000' }, { dryRun: 'true' }, { dryRun: 1 }, { force: true }, { __proto__x: 1 },
      '{"__proto__":{"dryRun":true}}', { dryRun: true, extra: 1 },
    ];
    for (const body of bodies) await expectRefused('POST', '/api/etl/runs/resume', { body });
    // Spellings JavaScript reads but Postgres would refuse: read as instants, never a 500.
    for (const since of ['2024-02-30T00:00:00Z', 'Tue, 01 Jan 2030 00:00:00 +9999']) {
      const r = await t.call('POST', '/api/etl/runs/resume', { body: { since, dryRun: true } });
      expect(r.status, since).toBe(200);
    }
    for (const q of ['attempt=0', 'attempt=-1', 'attempt=1e3', 'attempt=abc', 'attempt=%00', 'attempt=9999999', 'attempt=1&attempt=2', 'x=1']) {
      await expectRefused('GET', `/api/etl/runs/${runId}/steps/transform/events?${q}`);
    }
    for (const body of [{ force: 'yes' }, { force: 1 }, { force: null }]) await expectRefused('POST', `/api/etl/runs/${runId}/resume`, { body });
    const dry = await t.call('POST', '/api/etl/runs/resume', { body: { dryRun: true, status: ['failed', 'cancelled'] } });
    expect(dry).toMatchObject({ status: 200, body: { matched: 0, resumed: [], skipped: [], dryRun: true } });
  });

  it('invalid cron expressions and time zones: 400 invalid_cron / invalid_timezone / invalid_input', async () => {
    const crons = ['', ' ', '* * * *', '* * * * * * *', '61 * * * *', '*/0 * * * *', '0 0 30 2 *', 'H * * * *', '@reboot',
      "'; drop table etl_runs;--", '<script>alert(1)</script> * * * *', '0 0 * * *\u0000', '* '.repeat(100), 'x'.repeat(121), '\ud800 * * * *'];
    for (const cron of crons) {
      const r = await expectRefused('PUT', '/api/etl/pipelines/demo/cron', { body: { cron, timezone: 'UTC' } });
      expect(r.status, cron).toBe(400);
    }
    const zones = ['', 'Mars/Olympus', '+01:00', '../../etc/passwd', 'Europe/Kyiv\u0000', 'x'.repeat(65), '<script>', 'Europe/Київ',
      "UTC'; drop table etl_pipelines;--", 'Etc/../UTC'];
    for (const timezone of zones) {
      const r = await expectRefused('PUT', '/api/etl/pipelines/demo/cron', { body: { cron: '0 * * * *', timezone } });
      expect(r.status, timezone).toBe(400);
    }
    await expectRefused('PUT', '/api/etl/pipelines/demo/cron', { body: { cron: ['0 * * * *'], timezone: 'UTC' } });
    await expectRefused('PUT', '/api/etl/pipelines/demo/cron', { body: { cron: '0 * * * *', timezone: { $ne: 1 } } });
  });

  it('2 MB bodies: 413 with or without Content-Length', async () => {
    const big = JSON.stringify({ params: { x: 'a'.repeat(2 * 1024 * 1024) } });
    for (const [method, template] of ROUTES.filter(([m]) => m !== 'GET')) {
      const path = fill(template, '', '');
      expect((await expectRefused(method, path, { body: big })).status).toBe(413);
      const withLength = await expectRefused(method, path, { body: big, headers: { 'content-length': String(Buffer.byteLength(big)) } });
      expect(withLength.status).toBe(413);
    }
  });

  it('401 on every /api/etl route without credentials, with a wrong token or a bad cookie', async () => {
    const bad: Record<string, string>[] = [
      {}, { authorization: 'Bearer nope' }, { authorization: `Bearer ${'x'.repeat(10_000)}` }, { authorization: 'Bearer' },
      { authorization: `bearer ${t.token} extra` }, { authorization: `Token ${t.token}` },
      { cookie: `${SESSION_COOKIE}=../../etc/passwd` }, { cookie: `${SESSION_COOKIE}=*` }, { cookie: `${SESSION_COOKIE}=${'a'.repeat(5_000)}` },
      { cookie: `${SESSION_COOKIE}=%00%00%00%00%00%00%00%00` }, { cookie: `${SESSION_COOKIE}=x'%20or%201=1` }, { cookie: `${SESSION_COOKIE}=` },
    ];
    for (const [method, template] of [...ALL_ROUTES, ['GET', '/api/etl/nope'] as [string, string], ['POST', '/api/etl/nope'] as [string, string]]) {
      for (const headers of bad) {
        const r = await expectRefused(method, fill(template, '', ''), { auth: 'none', headers, body: method === 'GET' ? undefined : validBody(template) });
        expect(r.status, `${method} ${template} ${JSON.stringify(headers).slice(0, 60)}`).toBe(401);
      }
    }
    // The token is only accepted in the query on the SSE route.
    for (const [method, template] of ROUTES) {
      const r = await t.call(method, `${fill(template, '', '')}?token=${t.token}`, { auth: 'none', body: method === 'GET' ? undefined : validBody(template) });
      expect(r.status).toBe(401);
    }
  });

  it('session variants on every route: no role or {} user is 403 on mutations; expired, bad or foreign signatures, cookie plus a bad token are 401', async () => {
    const past = Date.now() - 60_000;
    const viewer = [await t.addSession('{"user":{}}'), await t.addSession('{"user":{"id":"v","role":"viewer"}}'),
      await t.addSession('{"user":{"id":"v","roles":"admin"}}')];
    const admin = await t.addSession('{"user":{"id":"a","role":"admin"}}');
    const expired = [await t.addSession(JSON.stringify({ user: { id: 'x', role: 'admin' }, expiresAt: new Date(past).toISOString() })),
      await t.addSession(JSON.stringify({ user: { id: 'x', role: 'admin' }, expires: past }))];
    const sig = signSessionId(admin, SECRET).split('.')[1];
    const unauthorized: Record<string, string>[] = [
      ...expired.map((id) => ({ cookie: `${SESSION_COOKIE}=${signSessionId(id, SECRET)}` })),
      { cookie: `${SESSION_COOKIE}=${admin}.${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}` },
      { cookie: `${SESSION_COOKIE}=${signSessionId(admin, 'some-other-secret-0123456789')}` },
      { cookie: `${SESSION_COOKIE}=${encodeURIComponent(`s:${signSessionId(admin, 'some-other-secret-0123456789')}`)}` },
      { cookie: `${SESSION_COOKIE}=${signSessionId(admin, SECRET)}`, authorization: 'Bearer not-the-token-000000' },
      { cookie: `${SESSION_COOKIE}=${admin}.${'A'.repeat(5_000)}` }, { cookie: `${SESSION_COOKIE}=s%3A` },
    ];
    const origin = { origin: 'http://localhost' };
    for (const [method, template] of [...ROUTES, ...ALL_ROUTES.filter(([, p]) => !p.includes('{'))]) {
      const path = fill(template, '', '');
      const body = method === 'GET' ? undefined : validBody(template);
      for (const headers of unauthorized) {
        const r = await expectRefused(method, path, { auth: 'none', headers: { ...headers, ...origin }, body });
        expect(r.status, `${method} ${template} ${JSON.stringify(headers).slice(0, 80)}`).toBe(401);
      }
      const mutation = method !== 'GET' && !template.endsWith('/events/ticket');
      if (!mutation) continue;
      for (const id of viewer) {
        const r = await expectRefused(method, path, { auth: 'none', headers: { cookie: `${SESSION_COOKIE}=${signSessionId(id, SECRET)}`, ...origin }, body });
        expect(r.status, `${method} ${template}`).toBe(403);
        expect(r.body.error.code).toBe('forbidden');
      }
    }
  });

  it('left Postgres unchanged, and leaked no secret into logs or responses', async () => {
    expect(await snapshot()).toBe(before);
    const haystack = [...t.logs, ...t.bodies].join('\n');
    for (const secret of [t.token, t.sessionId]) expect(haystack).not.toContain(secret);
    expect(t.logs.join('\n')).not.toMatch(/"level":50/); // no request failed with a 5xx
  });
});
