import { createHmac } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertReceiver } from './alert-receiver';
import { createHarness, demoSeed, type Harness } from './engine-harness';
import { waitFor } from './helpers';
import { spawnDemoWorker } from './services';

/**
 * Alerts end to end (SPEC §12): two real worker processes share the outbox and deliver to
 * a real local HTTP receiver. Timing is shortened through the ALERT_* variables (the
 * defaults are the contract: first attempt within 10 s, backoff capped at 60 s).
 */

const SECRET = 'alert-secret-9f2c1e7a55d04b3b';
const API_TOKEN = 'api-token-0b8e6d1f3c2a4e59';

let h: Harness;
const receiver = new AlertReceiver();
const workers: (ChildProcess & { exited: Promise<number | null> })[] = [];

async function spawnWorker() {
  const w = await spawnDemoWorker({
    DATABASE_URL: h.db.url, REDIS_URL: h.redisUrl, ETL_QUEUE: h.queueName, DEMO_PREFIX: h.prefix,
    ALERT_WEBHOOK_URL: receiver.url, ALERT_WEBHOOK_SECRET: SECRET, ETL_API_TOKEN: API_TOKEN, ETL_PUBLIC_URL: 'http://etl.test',
    ALERT_POLL_MS: '200', ALERT_BACKOFF_BASE_MS: '200', ALERT_BACKOFF_MAX_MS: '1500', ALERT_TIMEOUT_MS: '4000', ALERT_LEASE_MS: '5000',
  });
  workers.push(w);
  return w;
}

beforeAll(async () => {
  h = await createHarness({ startWorker: false, seeds: [demoSeed('demo')] });
  await receiver.up();
  await Promise.all([spawnWorker(), spawnWorker()]);
});
afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await receiver.down();
  await h?.close();
});

async function failedRun(): Promise<{ runId: string; alertId: string }> {
  await h.redis.set(`${h.prefix}:fail:transform`, '1');
  const { runId } = await h.engine.trigger('demo');
  await h.waitRun(runId, 'failed', 30_000);
  const { rows } = await h.db.pool.query(`select id from etl_alerts where run_id = $1 and type = 'run.failed'`, [runId]);
  expect(rows).toHaveLength(1); // after its retries: one alert, not one per attempt
  return { runId, alertId: rows[0].id };
}

const alertRow = async (id: string) => (await h.db.pool.query('select * from etl_alerts where id = $1', [id])).rows[0];
/** The alert's row once its delivery is recorded: the receiver acks before the sender
 *  writes the outcome, so a read right after the ack can still see it in flight. */
const deliveredRow = (id: string) => waitFor(async () => {
  const r = await alertRow(id);
  return r?.state === 'delivered' ? r : null;
}, { what: `alert ${id} recorded as delivered`, timeoutMs: 10_000 });
const receiptsOf = (id: string) => receiver.receipts.filter((r) => r.eventId === id);

describe('alerts, two worker processes, a real receiver', () => {
  it('a run failing after its retries: exactly one run.failed delivery, signed, no secret in it', async () => {
    const t0 = Date.now();
    const { runId, alertId } = await failedRun();
    expect((await h.run(runId)).steps[1].attempts).toBe(2);
    await waitFor(() => receiver.acked().some((r) => r.eventId === alertId), { what: 'the run.failed delivery', timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 1_500)); // room for a duplicate from the other replica
    const got = receiptsOf(alertId);
    expect(got).toHaveLength(1);
    const r = got[0];
    expect(r.at - t0).toBeLessThan(15_000);
    expect(r.signature).toBe(`sha256=${createHmac('sha256', SECRET).update(r.body).digest('hex')}`);
    expect(r.json).toMatchObject({
      id: alertId, type: 'run.failed', pipelineId: 'demo', runId, url: `http://etl.test/etl/#/runs/${runId}`,
      summary: expect.stringContaining('transform: '), occurredAt: expect.any(String),
    });
    expect(String(r.json.text)).toMatch(/^\S+ ETL run of demo failed: transform: .+ — http:\/\/etl\.test\/etl\/#\/runs\//);
    expect(String(r.json.text)).not.toContain('\n');
    for (const body of receiver.receipts.map((x) => x.body)) {
      expect(body).not.toContain(SECRET);
      expect(body).not.toContain(API_TOKEN);
    }
    expect(await deliveredRow(alertId)).toMatchObject({ state: 'delivered', attempts: 1, last_status: 200 });
  }, 60_000);

  it('a recovery: the next success after the failure is run.recovered', async () => {
    await h.redis.del(`${h.prefix}:fail:transform`);
    const { runId } = await h.engine.trigger('demo');
    await h.waitRun(runId, 'succeeded', 30_000);
    const rec = await waitFor(() => receiver.acked().find((r) => r.json.type === 'run.recovered'), { what: 'run.recovered', timeoutMs: 10_000 });
    expect(rec.json).toMatchObject({ runId, pipelineId: 'demo', summary: 'succeeded after 1 failed run' });
    // A second success is not a recovery.
    const again = await h.engine.trigger('demo');
    await h.waitRun(again.runId, 'succeeded', 30_000);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(receiver.receipts.filter((r) => r.json.type === 'run.recovered')).toHaveLength(1);
  }, 60_000);

  it('receiver answering 503, then down for 20 s: the alert arrives once it is back, with the same id', async () => {
    receiver.mode = 'fail';
    const { alertId } = await failedRun();
    await waitFor(() => receiptsOf(alertId).length >= 2, { what: 'two 503 answers', timeoutMs: 10_000 });
    await receiver.down();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 20_000));
    const during = await alertRow(alertId);
    expect(during).toMatchObject({ state: 'pending' });
    expect(during.attempts).toBeGreaterThan(receiptsOf(alertId).length); // attempts went on while it was down
    expect(during.last_error).toMatch(/ECONNREFUSED|fetch failed/);
    receiver.mode = 'ok';
    await receiver.up();
    await waitFor(() => receiver.acked().some((r) => r.eventId === alertId), { what: 'delivery after the outage', timeoutMs: 10_000 });
    expect(Date.now() - downAt).toBeGreaterThanOrEqual(20_000);
    const got = receiptsOf(alertId);
    expect(got.every((r) => r.json.id === alertId)).toBe(true);
    expect(new Set(got.map((r) => r.body)).size).toBe(1); // byte-identical redeliveries
    expect(got.filter((r) => r.status === 503).length).toBeGreaterThanOrEqual(2);
    expect(receiver.acked().filter((r) => r.eventId === alertId)).toHaveLength(1);
    expect(await deliveredRow(alertId)).toMatchObject({ state: 'delivered' });
  }, 90_000);

  it('SIGKILL of the sending worker mid-delivery loses no alert: the other replica delivers the same id', async () => {
    receiver.mode = 'hold';
    const { alertId } = await failedRun();
    await waitFor(() => receiptsOf(alertId).length === 1, { what: 'the held delivery', timeoutMs: 10_000 });
    const sender = (await alertRow(alertId)).claimed_by as string;
    const victim = workers.find((w) => sender.endsWith(`:${w.pid}`))!;
    expect(victim).toBeTruthy();
    victim.kill('SIGKILL');
    await victim.exited;
    receiver.mode = 'ok';
    await waitFor(() => receiver.acked().some((r) => r.eventId === alertId), { what: 'redelivery by the surviving worker', timeoutMs: 20_000 });
    const row = await deliveredRow(alertId);
    expect(row).toMatchObject({ state: 'delivered', attempts: 2 });
    expect(row.claimed_by).not.toBe(sender);
    expect(receiptsOf(alertId).map((r) => r.json.id)).toEqual([alertId, alertId]);
    expect(receiver.acked().filter((r) => r.eventId === alertId)).toHaveLength(1);
  }, 60_000);
});
