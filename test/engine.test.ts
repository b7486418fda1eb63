import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../db/tx';
import { ConflictError, NotFoundError } from '../lib/errors';
import { rootJobId } from '../workflows/engine/flow';
import { createHarness, demoSeed, runs, stepState, type Harness } from './engine-harness';
import { silentLog, waitFor } from './helpers';


let h: Harness;
beforeAll(async () => {
  h = await createHarness({ seeds: [demoSeed('demo'), demoSeed('slow', { transformMs: 30_000 }), demoSeed('other')] });
});
afterAll(async () => h?.close());

describe('engine (real Postgres + Redis, in-process worker)', () => {
  it('runs a 3-step workflow to success with every step row correct', async () => {
    const { runId } = await h.engine.trigger('demo', { params: { note: 'x' } });
    const run = await h.waitRun(runId, 'succeeded');
    expect(run.trigger).toBe('manual');
    expect(run.rows).toEqual({ in: 3, out: 3 });
    expect(run.steps.map((s) => [s.key, s.position, s.status, s.attempts])).toEqual([
      ['fetch', 0, 'succeeded', 1], ['transform', 1, 'succeeded', 1], ['write', 2, 'succeeded', 1],
    ]);
    expect(run.steps[1]).toMatchObject({ rowsIn: 3, rowsOut: 3, output: { values: [10, 20, 30] } });
    expect(run.attempts.every((a) => a.status === 'succeeded')).toBe(true);
    expect(await h.execs(runId)).toEqual({ fetch: 1, transform: 1, write: 1 });
    expect(await h.redis.lrange(`${h.prefix}:out:${runId}`, 0, -1)).toEqual(['10', '20', '30']);
  });

  it('fails a step after its attempts, then retries that step alone and the run completes', async () => {
    await h.redis.set(`${h.prefix}:fail:transform`, '1');
    const { runId } = await h.engine.trigger('demo');
    const failed = await h.waitRun(runId, 'failed');
    expect(failed.steps.map((s) => s.status)).toEqual(['succeeded', 'failed', 'pending']);
    expect(failed.steps[1].attempts).toBe(2);
    expect(failed.attempts.filter((a) => a.stepKey === 'transform').map((a) => a.status)).toEqual(['failed', 'failed']);
    // The error is recorded, with the secret in it redacted.
    expect(failed.steps[1].error).toContain('transform told to fail');
    expect(JSON.stringify(failed)).not.toContain('hunter2-secret');

    // The failure failed the flow up to its root, so no job waits for children forever.
    await waitFor(async () => (await (await h.engine.queue.getJob(rootJobId(runId, failed.generation)))?.getState()) === 'failed',
      { what: 'the root job to be failed' });
    await expect(h.engine.retryStep(runId, 'fetch')).rejects.toBeInstanceOf(ConflictError);
    await expect(h.engine.retryStep(runId, 'nope')).rejects.toBeInstanceOf(NotFoundError);
    await h.redis.del(`${h.prefix}:fail:transform`);
    await h.engine.retryStep(runId, 'transform');
    const done = await h.waitRun(runId, 'succeeded');
    expect(done.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(done.steps[1].attempts).toBe(3);
    expect(await h.execs(runId)).toEqual({ fetch: 1, transform: 3, write: 1 });
    await expect(h.engine.resume(runId)).rejects.toMatchObject({ code: 'run_succeeded' });
  });

  it('resumes a failed run after its BullMQ jobs were removed', async () => {
    await h.redis.set(`${h.prefix}:fail:transform`, '1');
    const { runId } = await h.engine.trigger('demo');
    const failed = await h.waitRun(runId, 'failed');
    // Throw away every job of the flow, as a Redis flush or retention would.
    const root = await h.engine.queue.getJob(rootJobId(runId, failed.generation));
    await root!.remove();
    await waitFor(async () => !(await h.engine.queue.getJob(rootJobId(runId, failed.generation))));
    await h.redis.del(`${h.prefix}:fail:transform`);
    await h.engine.resume(runId);
    const done = await h.waitRun(runId, 'succeeded');
    expect(done.generation).toBe(failed.generation + 1);
    expect(await h.execs(runId)).toEqual({ fetch: 1, transform: 3, write: 1 });
  });

  it('reruns from a middle step into a new run that reuses earlier checkpoints', async () => {
    const { runId: first } = await h.engine.trigger('demo');
    await h.waitRun(first, 'succeeded');
    const { runId } = await h.engine.rerunFrom(first, 'transform');
    expect(runId).not.toBe(first);
    const run = await h.waitRun(runId, 'succeeded');
    expect(run).toMatchObject({ trigger: 'rerun', parentRunId: first });
    expect(run.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(run.steps[0].attempts).toBe(0); // reused, never executed in this run
    expect(await h.execs(runId)).toEqual({ fetch: 0, transform: 1, write: 1 });
    expect(await h.redis.lrange(`${h.prefix}:out:${runId}`, 0, -1)).toEqual(['10', '20', '30']);
  });

  it('cancels a running step: it observes the abort and the run is cancelled', async () => {
    const { runId } = await h.engine.trigger('slow');
    await waitFor(() => h.redis.exists(`${h.prefix}:started:${runId}:transform`), { what: 'transform to start' });
    await h.engine.cancel(runId);
    await waitFor(() => h.redis.exists(`${h.prefix}:aborted:${runId}`), { what: 'the step to observe the abort' });
    const run = await h.waitRun(runId, 'cancelled');
    expect(run.steps.map((s) => s.status)).toEqual(['succeeded', 'cancelled', 'cancelled']);
    // The flow drains: the root job completes without running the write step.
    await waitFor(async () => (await h.engine.queue.getJob(rootJobId(runId, 0)))?.isCompleted(), { what: 'flow to drain' });
    expect((await h.execs(runId)).write).toBe(0);
    await expect(h.engine.cancel(runId)).rejects.toMatchObject({ code: 'run_finished' });
  });

  it('refuses a second trigger while a run of the pipeline is active', async () => {
    const { runId } = await h.engine.trigger('slow');
    await expect(h.engine.trigger('slow')).rejects.toMatchObject({ code: 'run_active' });
    // Another pipeline is not blocked.
    const other = await h.engine.trigger('other');
    await h.waitRun(other.runId, 'succeeded');
    await h.engine.cancel(runId);
    await h.waitRun(runId, 'cancelled');
    const again = await h.engine.trigger('slow');
    await h.engine.cancel(again.runId);
  });

  it('never lets a step start before every earlier step has succeeded', async () => {
    const runId = '11111111-2222-4333-8444-555555555555';
    await runs.insertRun(h.db.pool, {
      id: runId, pipelineId: 'other', trigger: 'manual', params: {}, exclusive: false,
      steps: ['fetch', 'transform', 'write'].map((key, position) => ({ key, position, status: 'pending' as const })),
    });
    const claim = (key: string) => stepState.claimStep(h.db.pool, { runId, key, generation: 0, jobId: `${runId}.g0.${key}`, worker: 'test' });
    expect(await claim('transform')).toBeNull();
    expect(await claim('fetch')).toMatchObject({ attempt: 1 });
    expect(await claim('transform')).toBeNull();
    await stepState.completeStep(h.db.pool, { runId, key: 'fetch', generation: 0, attempt: 1, output: {}, rowsIn: null, rowsOut: null, last: false });
    expect(await claim('transform')).toMatchObject({ attempt: 1 });
    await h.engine.cancel(runId);
  });

  it('hands the next step over in the completing statement; only its job\'s first activation takes it over', async () => {
    const insert = async (runId: string) => {
      await runs.insertRun(h.db.pool, {
        id: runId, pipelineId: 'other', trigger: 'manual', params: { p: 1 }, exclusive: false,
        steps: ['fetch', 'transform', 'write'].map((key, position) => ({ key, position, status: 'pending' as const })),
      });
      await stepState.claimStep(h.db.pool, { runId, key: 'fetch', generation: 0, jobId: `${runId}.g0.fetch`, worker: 'A' });
      return stepState.completeStep(h.db.pool, {
        runId, key: 'fetch', generation: 0, attempt: 1, output: { ref: 'x' }, rowsIn: null, rowsOut: 3, last: false,
        next: { key: 'transform', jobId: `${runId}.g0.transform`, worker: 'A' },
      });
    };
    const state = async (runId: string) => (await h.db.pool.query(
      `select s.status, s.attempts, s.handoff, (select json_agg(json_build_object('n', a.attempt, 'status', a.status, 'worker', a.worker) order by a.attempt)
         from etl_step_attempts a where a.run_id = s.run_id and a.step_key = s.key) as history
       from etl_run_steps s where s.run_id = $1 and s.key = 'transform'`, [runId])).rows[0];
    const claim = (runId: string, o: { adopt: boolean; jobId?: string }) => stepState.claimStep(h.db.pool, {
      runId, key: 'transform', generation: 0, jobId: o.jobId ?? `${runId}.g0.transform`, worker: 'B', adopt: o.adopt,
    });

    // The completion claimed transform: attempt 1, running, recorded for worker A, with
    // the outputs and params the step needs.
    const a = '21111111-2222-4333-8444-555555555555';
    const done = await insert(a);
    expect(done).toMatchObject({ done: true, runFinished: false, next: { attempt: 1, params: { p: 1 }, outputs: { fetch: { ref: 'x' } } } });
    expect(await state(a)).toEqual({ status: 'running', attempts: 1, handoff: true, history: [{ n: 1, status: 'running', worker: 'A' }] });
    // Its job's first activation in another worker adopts attempt 1 (no new attempt).
    expect(await claim(a, { adopt: true })).toMatchObject({ attempt: 1, outputs: { fetch: { ref: 'x' } } });
    expect(await state(a)).toEqual({ status: 'running', attempts: 1, handoff: false, history: [{ n: 1, status: 'running', worker: 'B' }] });
    // A later activation (a stall, a retry) fences the adopted execution off.
    expect(await claim(a, { adopt: true })).toMatchObject({ attempt: 2 });
    expect((await state(a)).history.map((x: { status: string }) => x.status)).toEqual(['lost', 'running']);

    // A re-activation of the job (adopt false) or another job never adopts.
    const b = '31111111-2222-4333-8444-555555555555';
    await insert(b);
    expect(await claim(b, { adopt: true, jobId: 'another-job' })).toMatchObject({ attempt: 2 });
    expect(await state(b)).toMatchObject({ attempts: 2, handoff: false, history: [{ n: 1, status: 'lost' }, { n: 2, status: 'running', worker: 'B' }] });
    const b2 = '32111111-2222-4333-8444-555555555555';
    await insert(b2);
    expect(await claim(b2, { adopt: false })).toMatchObject({ attempt: 2 });

    // A run cancelled after the handoff: its job cannot take the step.
    const c = '41111111-2222-4333-8444-555555555555';
    await insert(c);
    await h.engine.cancel(c);
    expect(await claim(c, { adopt: true })).toBeNull();
    expect(await state(c)).toMatchObject({ status: 'cancelled', history: [{ n: 1, status: 'cancelled' }] });

    // The worker that made the handoff took it over itself (and recorded so): a
    // redelivery of the job, even one BullMQ counts as first, gets a new attempt.
    const e = '61111111-2222-4333-8444-555555555555';
    await insert(e);
    await stepState.markHandoffsTaken(h.db.pool, [{ runId: e, key: 'transform', attempt: 1 }]);
    expect(await claim(e, { adopt: true })).toMatchObject({ attempt: 2 });
    expect((await state(e)).history.map((x: { status: string }) => x.status)).toEqual(['lost', 'running']);

    // The last step hands nothing over; a completion that lost its attempt hands nothing over.
    const d = '51111111-2222-4333-8444-555555555555';
    await insert(d);
    const stale = await stepState.completeStep(h.db.pool, {
      runId: d, key: 'fetch', generation: 0, attempt: 1, output: {}, rowsIn: null, rowsOut: null, last: false,
      next: { key: 'transform', jobId: `${d}.g0.transform`, worker: 'A' },
    });
    expect(stale).toEqual({ done: false, runFinished: false, next: null });
    for (const id of [a, b, b2, d, e]) await h.engine.cancel(id);
  });

  it('a cancel racing a completion that hands the next step over leaves no attempt running', async () => {
    const runId = '71111111-2222-4333-8444-555555555555';
    await runs.insertRun(h.db.pool, {
      id: runId, pipelineId: 'other', trigger: 'manual', params: {}, exclusive: false,
      steps: ['fetch', 'transform', 'write'].map((key, position) => ({ key, position, status: 'pending' as const })),
    });
    await stepState.claimStep(h.db.pool, { runId, key: 'fetch', generation: 0, jobId: `${runId}.g0.fetch`, worker: 'A' });
    let cancelling: Promise<unknown> | undefined;
    await withTransaction(h.db.pool, async (tx) => {
      const done = await stepState.completeStep(tx, {
        runId, key: 'fetch', generation: 0, attempt: 1, output: {}, rowsIn: null, rowsOut: null, last: false,
        next: { key: 'transform', jobId: `${runId}.g0.transform`, worker: 'A' },
      });
      expect(done.next).toMatchObject({ attempt: 1 });
      // The cancel starts while the completion is uncommitted, and waits for its locks.
      cancelling = h.engine.cancel(runId);
      await waitFor(async () => (await h.db.pool.query(
        `select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%cancelled%'`)).rowCount! > 0,
      { what: 'the cancel to wait for the completion' });
    });
    await cancelling;
    const { rows } = await h.db.pool.query('select step_key, status from etl_step_attempts where run_id = $1 order by step_key', [runId]);
    expect(rows).toEqual([{ step_key: 'fetch', status: 'succeeded' }, { step_key: 'transform', status: 'cancelled' }]);
    expect((await h.db.pool.query('select key, status, handoff from etl_run_steps where run_id = $1 order by position', [runId])).rows)
      .toEqual([{ key: 'fetch', status: 'succeeded', handoff: false }, { key: 'transform', status: 'cancelled', handoff: false },
        { key: 'write', status: 'cancelled', handoff: false }]);
  });

  it('keeps staged checkpoints for the retention period only', async () => {
    const { runId: old } = await h.engine.trigger('demo');
    await h.waitRun(old, 'succeeded');
    const { runId: recent } = await h.engine.trigger('demo');
    await h.waitRun(recent, 'succeeded');
    for (const id of [old, recent]) {
      await h.db.pool.query(`insert into etl_blobs (run_id, name, seq, rows, data) values ($1, 'fetch.a1', 0, 1, '{}\n')`, [id]);
    }
    await h.db.pool.query(`update etl_runs set finished_at = now() - interval '20 days' where id = $1`, [old]);
    const { reconcileOnce } = await import('../worker/reconciler');
    const left = async () => (await h.db.pool.query('select run_id from etl_blobs where run_id = any($1::uuid[])', [[old, recent]])).rows.map((r) => r.run_id);
    // A pass may find the worker's own reconciler holding the lock: poll until one ran.
    await waitFor(async () => {
      await reconcileOnce({ db: h.db, queue: h.engine.queue, engine: h.engine, log: silentLog, retentionDays: 14 });
      return (await left()).length === 1;
    }, { what: 'the expired checkpoint to be purged' });
    expect(await left()).toEqual([recent]);
  });

  it('answers unknown ids with NotFoundError', async () => {
    await expect(h.engine.trigger('nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.engine.resume('00000000-0000-0000-0000-000000000000')).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.engine.cancel('not-a-uuid')).rejects.toBeInstanceOf(NotFoundError);
  });
});
