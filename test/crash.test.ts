import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { createHarness, demoSeed, type Harness } from './engine-harness';
import { waitFor } from './helpers';
import { spawnDemoWorker, ThrowawayPostgres, ThrowawayRedis } from './services';

/** Real process kills, a Redis restart and a Postgres outage in the middle of runs. */

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

const workerEnv = (h: Harness, extra: Record<string, string> = {}) => ({
  DATABASE_URL: h.db.url, REDIS_URL: h.redisUrl, ETL_QUEUE: h.queueName, DEMO_PREFIX: h.prefix, ...extra,
});

async function spawn(h: Harness, extra?: Record<string, string>) {
  const c = await spawnDemoWorker(workerEnv(h, extra));
  children.push(c);
  return c;
}

const noStepRunning = async (h: Harness) =>
  (await h.db.pool.query(`select count(*)::int as n from etl_run_steps where status = 'running'`)).rows[0].n === 0;

describe('crashes', () => {
  let h: Harness;
  afterAll(async () => h?.close());

  it('a SIGKILLed worker mid-step: a second worker finishes the run, each step at most twice, output once', async () => {
    h = await createHarness({ startWorker: false, seeds: [demoSeed('demo', { transformMs: 4_000 })] });
    const a = await spawn(h);
    const { runId } = await h.engine.trigger('demo');
    await waitFor(async () => (await h.redis.get(`${h.prefix}:started:${runId}:transform`)) === String(a.pid), { what: 'worker A to start transform' });
    // Killed before the second worker is even started: on a loaded machine a start-up can
    // outlast the step, and A must not get to finish it.
    a.kill('SIGKILL');
    await a.exited;
    await spawn(h);
    const run = await h.waitRun(runId, 'succeeded', 60_000);
    const execs = await h.execs(runId);
    expect(execs).toEqual({ fetch: 1, transform: 2, write: 1 });
    expect(run.attempts.filter((x) => x.stepKey === 'transform').map((x) => x.status)).toEqual(['lost', 'succeeded']);
    expect(await h.redis.lrange(`${h.prefix}:out:${runId}`, 0, -1)).toEqual(['10', '20', '30']);
    expect(await noStepRunning(h)).toBe(true);
  }, 90_000);

  it('SIGTERM: the worker stops taking jobs, hands the running step back within its grace and exits 0', async () => {
    await h.setConfig('demo', { transformMs: 3_000 });
    const a = await spawn(h, { SHUTDOWN_GRACE_MS: '500' });
    const { runId } = await h.engine.trigger('demo');
    await waitFor(async () => (await h.redis.get(`${h.prefix}:started:${runId}:transform`)) === String(a.pid), { what: 'transform to start' });
    const t0 = Date.now();
    a.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const mid = await h.run(runId);
    expect(mid.steps[1]).toMatchObject({ status: 'pending', attempts: 1 });
    expect(mid.attempts.filter((x) => x.stepKey === 'transform').map((x) => x.status)).toEqual(['released']);
    await spawn(h);
    const done = await h.waitRun(runId, 'succeeded', 30_000);
    expect((await h.execs(runId)).transform).toBe(2);
    // The next execution got a new attempt number (never the released one's).
    expect(done.attempts.filter((x) => x.stepKey === 'transform').map((x) => [x.attempt, x.status])).toEqual([[1, 'released'], [2, 'succeeded']]);
  }, 60_000);
});

describe('Redis restart mid-run', () => {
  let h: Harness;
  let redis: ThrowawayRedis;
  afterAll(async () => {
    await h?.close();
    await redis?.kill();
  });

  it('loses every job, and the run completes anyway; no step stays running', async () => {
    redis = await ThrowawayRedis.start();
    h = await createHarness({ startWorker: false, redisUrl: redis.url, seeds: [demoSeed('demo', { transformMs: 2_000 })] });
    const w = await spawn(h, { RECONCILE_MS: '1000', RECONCILE_GRACE_MS: '1000' });
    const { runId } = await h.engine.trigger('demo');
    // Execution counters live in the throwaway Redis too, so watch Postgres instead.
    await waitFor(async () => (await h.run(runId)).steps[1].status === 'running', { what: 'transform to start' });
    await redis.kill();
    await redis.start();
    const run = await h.waitRun(runId, 'succeeded', 60_000);
    expect(run.generation).toBeGreaterThan(0);
    expect(run.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(run.steps.every((s) => s.attempts <= 2)).toBe(true);
    expect(await noStepRunning(h)).toBe(true);
    // The worker survived the outage and still takes new runs.
    const next = await h.engine.trigger('demo');
    await h.waitRun(next.runId, 'succeeded', 30_000);
    expect(w.exitCode).toBeNull();
  }, 120_000);
});

describe('Postgres outage of ~10 s mid-run', () => {
  let h: Harness | undefined;
  let pgs: ThrowawayPostgres;
  afterAll(async () => {
    await h?.close();
    await pgs?.destroy();
  });

  it('the run completes by itself once Postgres is back; no step stays running', async () => {
    pgs = await ThrowawayPostgres.start();
    h = await createHarness({ startWorker: false, pgBase: pgs.baseUrl, seeds: [demoSeed('demo', { transformMs: 1_500 })] });
    await spawn(h);
    const { runId } = await h.engine.trigger('demo');
    await waitFor(async () => (await h!.run(runId)).steps[1].status === 'running', { what: 'transform to start' });
    await pgs.stop();
    await new Promise((r) => setTimeout(r, 10_000)); // the outage itself: Postgres is down for 10 s
    await pgs.start();
    const run = await h.waitRun(runId, 'succeeded', 60_000);
    expect(run.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(await noStepRunning(h)).toBe(true);
  }, 120_000);
});
