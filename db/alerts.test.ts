import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../test/helpers';
import { KEYS, newRun, seed } from '../test/run-rows';
import * as alerts from './alerts';
import * as runs from './runs';
import * as steps from './steps';

/**
 * The alert outbox against a real Postgres: the run-ending statements write their alert
 * themselves (failed every time, recovered once after a failure streak), subjects change
 * once, and a claim is one sender's until its lease runs out.
 */

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase([seed('p'), seed('q')]);
});
afterAll(async () => db?.drop());

const claim = (runId: string, key: string) =>
  steps.claimStep(db.pool, { runId, key, generation: 0, jobId: `${runId}.g0.${key}`, worker: 'A' });

async function failRun(pipeline: string): Promise<string> {
  const runId = await newRun(db.pool, pipeline);
  await claim(runId, 'fetch');
  await steps.failStep(db.pool, { runId, key: 'fetch', generation: 0, attempt: 1, error: 'boom', stack: null, final: false });
  await claim(runId, 'fetch');
  await steps.failStep(db.pool, { runId, key: 'fetch', generation: 0, attempt: 2, error: 'boom again', stack: null, final: true });
  return runId;
}

async function succeedRun(pipeline: string, viaFinishRun = false): Promise<string> {
  const runId = await newRun(db.pool, pipeline);
  for (const [i, key] of KEYS.entries()) {
    await claim(runId, key);
    await steps.completeStep(db.pool, {
      runId, key, generation: 0, attempt: 1, output: null, rowsIn: null, rowsOut: 1, last: !viaFinishRun && i === KEYS.length - 1,
    });
  }
  if (viaFinishRun) await runs.finishRun(db.pool, { runId, generation: 0 });
  return runId;
}

const ofPipeline = async (p: string) =>
  (await db.pool.query(`select type, run_id, summary, details from etl_alerts where pipeline_id = $1 order by occurred_at, type`, [p])).rows;

describe('run alerts in the run-ending statements', () => {
  it('a failure after retries is one run.failed; the first success after failures is one run.recovered', async () => {
    expect(await succeedRun('p')).toBeTruthy();
    expect(await ofPipeline('p')).toEqual([]); // a success with no failure before it says nothing
    const f1 = await failRun('p');
    const f2 = await failRun('p');
    let list = await ofPipeline('p');
    expect(list.map((a) => [a.type, a.run_id, a.summary])).toEqual([
      ['run.failed', f1, 'fetch: boom again'], ['run.failed', f2, 'fetch: boom again'],
    ]);
    const ok = await succeedRun('p');
    await succeedRun('p');
    list = await ofPipeline('p');
    expect(list).toHaveLength(3);
    expect(list[2]).toMatchObject({ type: 'run.recovered', run_id: ok, summary: 'succeeded after 2 failed runs', details: { lastFailedRunId: f2 } });
  });

  it('finishRun (the root job) reports a recovery too', async () => {
    await failRun('q');
    const ok = await succeedRun('q', true);
    expect((await ofPipeline('q')).map((a) => [a.type, a.run_id])).toEqual([['run.failed', expect.any(String)], ['run.recovered', ok]]);
  });
});

describe('subjects and the outbox', () => {
  it('transitionSubject alerts once per change, and on first sight only when asked', async () => {
    const t = (state: string) => alerts.transitionSubject(db.pool, {
      subject: 'dataset:d1', state, alertOnFirst: state === 'stale',
      alert: { type: state === 'stale' ? 'dataset.stale' : 'dataset.fresh', pipelineId: 'p', dataset: 'd1', summary: state },
    });
    expect(await t('fresh')).toBeNull();
    expect(await t('fresh')).toBeNull();
    const stale = await t('stale');
    expect(stale).toEqual(expect.any(String));
    expect(await Promise.all([t('stale'), t('stale')])).toEqual([null, null]);
    const [a, b] = await Promise.all([t('fresh'), t('fresh')]);
    expect([a, b].filter(Boolean)).toHaveLength(1);
  });

  it('a claimed alert is invisible to other senders until its lease runs out; stale claims cannot record', async () => {
    const id = await alerts.insertAlert(db.pool, { type: 'test', summary: 'test alert' });
    const mine = (rows: alerts.OutboxRow[]) => rows.filter((r) => r.id === id);
    const [a] = mine(await alerts.claimDueAlerts(db.pool, { worker: 'A', leaseMs: 300, limit: 100 }));
    expect(a).toMatchObject({ id, attempts: 1 });
    expect(mine(await alerts.claimDueAlerts(db.pool, { worker: 'B', leaseMs: 300, limit: 100 }))).toEqual([]);
    await new Promise((r) => setTimeout(r, 400));
    const [b] = mine(await alerts.claimDueAlerts(db.pool, { worker: 'B', leaseMs: 10_000, limit: 100 }));
    expect(b).toMatchObject({ id, attempts: 2 });
    // A (its lease lost) cannot record; B can.
    expect(await alerts.recordAttempt(db.pool, { id, worker: 'A', attempt: 1, delivered: true })).toBe(false);
    expect(await alerts.recordAttempt(db.pool, { id, worker: 'B', attempt: 2, delivered: false, status: 503, error: 'HTTP 503', retryInMs: 0 })).toBe(true);
    const [c] = mine(await alerts.claimDueAlerts(db.pool, { worker: 'B', leaseMs: 10_000, limit: 100 }));
    expect(await alerts.recordAttempt(db.pool, { id, worker: 'B', attempt: c.attempts, delivered: true, status: 200 })).toBe(true);
    const [row] = (await alerts.listAlerts(db.pool, 100)).filter((r) => r.id === id);
    expect(row).toMatchObject({ state: 'delivered', attempts: 3, lastStatus: 200, nextAttemptAt: null });
    expect(await alerts.alertCounts(db.pool)).toMatchObject({ failed: 0 });
  });
});
