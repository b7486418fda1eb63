import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SESSION_COOKIE, createTestApp, demoSeed, type TestApp } from '../testing';

/** GET /alerts and POST /alerts/test through app.request (no sender: the outbox as recorded). */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('demo')], config: { alertWebhookConfigured: true } });
});
afterAll(async () => t?.close());

const asSession = async (method: string, path: string, user: unknown) => {
  const sid = await t.addSession(JSON.stringify({ user }));
  return t.call(method, path, { auth: 'none', headers: { cookie: `${SESSION_COOKIE}=${sid}`, origin: 'http://localhost' } });
};

describe('alerts API', () => {
  it('lists a failed run\'s alert with its delivery state; limit is validated', async () => {
    await t.h.redis.set(`${t.h.prefix}:fail:transform`, '1');
    const runId = await t.triggerAndWait('demo', 'failed');
    const r = await t.call('GET', '/api/etl/alerts?limit=5');
    expect(r.status).toBe(200);
    expect(r.body.webhookConfigured).toBe(true);
    expect(r.body.alerts).toHaveLength(1);
    expect(r.body.alerts[0]).toMatchObject({
      type: 'run.failed', pipelineId: 'demo', runId, state: 'pending', attempts: 0, lastError: null, nextAttemptAt: expect.any(String),
      summary: expect.stringMatching(/^transform: /),
    });
    for (const bad of ['0', '201', 'x', '-1']) expect((await t.call('GET', `/api/etl/alerts?limit=${bad}`)).status).toBe(400);
    expect((await t.call('GET', '/api/etl/alerts', { auth: 'none' })).status).toBe(401);
    // A viewer session may read.
    expect((await asSession('GET', '/api/etl/alerts', { id: 'v', role: 'viewer' })).status).toBe(200);
  });

  it('POST /alerts/test needs an operator, queues a test alert and audits it', async () => {
    expect((await asSession('POST', '/api/etl/alerts/test', { id: 'v', role: 'viewer' })).status).toBe(403);
    const r = await asSession('POST', '/api/etl/alerts/test', { id: 'op-7', name: 'Olena', role: 'admin' });
    expect(r.status).toBe(202);
    const list = (await t.call('GET', '/api/etl/alerts')).body.alerts;
    expect(list[0]).toMatchObject({ id: r.body.id, type: 'test', state: 'pending', pipelineId: null, summary: expect.stringContaining('Olena') });
    const audit = (await t.call('GET', '/api/etl/audit?limit=5')).body.entries;
    expect(audit[0]).toMatchObject({ action: 'alerts.test', actor: { kind: 'session', id: 'op-7' }, details: { alertId: r.body.id } });
  });

  it('/metrics reports pending and failed alerts', async () => {
    const m = await t.call('GET', '/metrics', { auth: 'none' });
    expect(m.text).toMatch(/^etl_alerts_pending 2$/m);
    expect(m.text).toMatch(/^etl_alerts_failed 0$/m);
    expect(m.text).toMatch(/^etl_alerts_oldest_pending_seconds \d/m);
  });
});
