import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../test/helpers';
import { attempts, newRun, runRow, seed, stepRow, stepStatuses } from '../test/run-rows';
import * as runs from './runs';
import * as steps from './steps';

/**
 * The step-level guards against a real Postgres: every write lands only for the current
 * generation, the current attempt and an allowed status, and a refused write changes no
 * row (checked by reading the rows back, not only the return value).
 */

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase([seed('p')]);
});
afterAll(async () => db?.drop());

const claim = (runId: string, key: string, o: { generation?: number; adopt?: boolean; jobId?: string; worker?: string } = {}) =>
  steps.claimStep(db.pool, {
    runId, key, generation: o.generation ?? 0, jobId: o.jobId ?? `${runId}.g${o.generation ?? 0}.${key}`,
    worker: o.worker ?? 'A', adopt: o.adopt,
  });

const complete = (runId: string, key: string, o: {
  attempt: number; generation?: number; output?: unknown; rowsOut?: number; last?: boolean; next?: string;
}) => steps.completeStep(db.pool, {
  runId, key, generation: o.generation ?? 0, attempt: o.attempt, output: o.output ?? { of: key }, rowsIn: null,
  rowsOut: o.rowsOut ?? null, last: o.last ?? false,
  next: o.next ? { key: o.next, jobId: `${runId}.g${o.generation ?? 0}.${o.next}`, worker: 'A' } : undefined,
});

const fail = (runId: string, key: string, o: { attempt: number; generation?: number; final?: boolean }) => steps.failStep(db.pool, {
  runId, key, generation: o.generation ?? 0, attempt: o.attempt, error: 'boom', stack: null, final: o.final ?? false,
});

describe('claimStep', () => {
  it('claims a new attempt, starts the run, and a second claim fences the first off as lost', async () => {
    const runId = await newRun(db.pool, 'p');
    const first = await claim(runId, 'fetch');
    expect(first).toMatchObject({ attempt: 1, params: { p: 1 }, pipelineId: 'p', config: { c: 'p' }, outputs: {}, runStarted: true });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'running', attempts: 1, job_id: `${runId}.g0.fetch`, handoff: false });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'running', generation: 0 });

    expect(await claim(runId, 'fetch', { worker: 'B' })).toMatchObject({ attempt: 2, runStarted: false });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'running', attempts: 2 });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'lost', 'A'], [2, 'running', 'B']]);
  });

  it('refuses a job of another generation and changes nothing', async () => {
    const runId = await newRun(db.pool, 'p');
    expect(await claim(runId, 'fetch', { generation: 1 })).toBeNull();
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'pending', attempts: 0, job_id: null });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([]);
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'queued', started_at: null });
  });

  it('refuses a step of a cancelled run', async () => {
    const runId = await newRun(db.pool, 'p');
    await runs.cancelRun(db.pool, runId, 'test');
    expect(await claim(runId, 'fetch')).toBeNull();
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'cancelled', attempts: 0 });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([]);
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'cancelled' });
  });

  it('refuses a step already succeeded, and a step whose earlier step has not succeeded', async () => {
    const runId = await newRun(db.pool, 'p');
    expect(await claim(runId, 'transform')).toBeNull();
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ status: 'pending', attempts: 0 });
    await claim(runId, 'fetch');
    await complete(runId, 'fetch', { attempt: 1 });
    expect(await claim(runId, 'fetch')).toBeNull();
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'succeeded', attempts: 1, output: { of: 'fetch' } });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'succeeded', 'A']]);
    // …and the claim of the next step sees the earlier step's output.
    expect(await claim(runId, 'transform')).toMatchObject({ attempt: 1, outputs: { fetch: { of: 'fetch' } } });
  });

  it('lets a streaming step run beside the steps of its group, never before its group’s head', async () => {
    const runId = await newRun(db.pool, 'p');
    const stream = (key: string, groupHead: number) => steps.claimStep(db.pool, { runId, key, generation: 0, jobId: `${runId}.g0.${key}`, worker: 'A', groupHead });
    // write in a group headed by transform (position 1): fetch must have succeeded first.
    expect(await stream('write', 1)).toBeNull();
    expect(await stepRow(db.pool, runId, 'write')).toMatchObject({ status: 'pending', attempts: 0 });
    // In the group headed by fetch (position 0), transform and write run while fetch runs.
    await claim(runId, 'fetch');
    expect(await stream('transform', 0)).toMatchObject({ attempt: 1, outputs: {} });
    expect(await stream('write', 0)).toMatchObject({ attempt: 1 });
    expect(await stepStatuses(db.pool, runId)).toEqual(['running', 'running', 'running']);
  });
});

describe('saveCheckpoint', () => {
  it('lands for the current running attempt only', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    expect(await steps.saveCheckpoint(db.pool, { runId, key: 'fetch', attempt: 1, checkpoint: { page: 1 } })).toBe(true);
    await claim(runId, 'fetch'); // attempt 2 supersedes attempt 1
    expect(await steps.saveCheckpoint(db.pool, { runId, key: 'fetch', attempt: 1, checkpoint: { page: 9 } })).toBe(false);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ attempts: 2, checkpoint: { page: 1 } });
    // The next claim reads the cursor back.
    expect(await claim(runId, 'fetch')).toMatchObject({ attempt: 3, checkpoint: { page: 1 } });
  });

  it('refuses a step no longer running (released back to pending)', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await steps.releaseStep(db.pool, { runId, key: 'fetch', attempt: 1 });
    expect(await steps.saveCheckpoint(db.pool, { runId, key: 'fetch', attempt: 1, checkpoint: { page: 2 } })).toBe(false);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'pending', checkpoint: null });
  });
});

describe('completeStep', () => {
  it('with a stale attempt returns done=false and changes nothing', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await claim(runId, 'fetch');
    const r = await complete(runId, 'fetch', { attempt: 1, next: 'transform' });
    expect(r).toEqual({ done: false, runFinished: false, next: null });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'running', attempts: 2, output: null, finished_at: null });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'lost', 'A'], [2, 'running', 'A']]);
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ status: 'pending', attempts: 0, handoff: false });
  });

  it('with the right attempt of an older generation changes nothing', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await fail(runId, 'fetch', { attempt: 1, final: true });
    const gen = await runs.requeueRun(db.pool, runId, 0);
    expect(await claim(runId, 'fetch', { generation: gen })).toMatchObject({ attempt: 2 });
    expect(await complete(runId, 'fetch', { attempt: 2, generation: 0, last: false })).toEqual({ done: false, runFinished: false, next: null });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'running', attempts: 2, output: null });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'failed', 'A'], [2, 'running', 'A']]);
  });

  it('refuses a completion once the run is cancelled', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await runs.cancelRun(db.pool, runId, 'test');
    expect(await complete(runId, 'fetch', { attempt: 1, next: 'transform' })).toEqual({ done: false, runFinished: false, next: null });
    expect(await stepStatuses(db.pool, runId)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ output: null });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'cancelled', 'A']]);
  });

  it('the last step finishes the run only when every other step has succeeded', async () => {
    const runId = await newRun(db.pool, 'p', {
      steps: [
        { key: 'fetch', position: 0, status: 'succeeded', rowsOut: 5 },
        { key: 'transform', position: 1, status: 'pending' },
        { key: 'write', position: 2, status: 'pending' },
      ],
    });
    await claim(runId, 'transform');
    await complete(runId, 'transform', { attempt: 1, rowsOut: 4 });
    await claim(runId, 'write');
    expect(await complete(runId, 'write', { attempt: 1, rowsOut: 3, last: true })).toMatchObject({ done: true, runFinished: true, next: null });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'succeeded', rows: { in: 5, out: 3 }, error: null });
    expect(await stepStatuses(db.pool, runId)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });
});

describe('handoff (completeStep with next, markHandoffsTaken)', () => {
  it('claims the next step in the completing statement, on behalf of its job', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    const r = await complete(runId, 'fetch', { attempt: 1, output: { ref: 'x' }, next: 'transform' });
    expect(r).toMatchObject({
      done: true, runFinished: false,
      next: { attempt: 1, params: { p: 1 }, config: { c: 'p' }, outputs: { fetch: { ref: 'x' } }, runStarted: false },
    });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'succeeded', output: { ref: 'x' }, handoff: false });
    expect(await stepRow(db.pool, runId, 'transform'))
      .toMatchObject({ status: 'running', attempts: 1, handoff: true, job_id: `${runId}.g0.transform` });
    expect(await attempts(db.pool, runId, 'transform')).toEqual([[1, 'running', 'A']]);
    // The job's first activation elsewhere adopts attempt 1 rather than starting attempt 2.
    expect(await claim(runId, 'transform', { adopt: true, worker: 'B' })).toMatchObject({ attempt: 1 });
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ attempts: 1, handoff: false });
    expect(await attempts(db.pool, runId, 'transform')).toEqual([[1, 'running', 'B']]);
  });

  it('markHandoffsTaken clears the flag for the named attempt only; then no activation can adopt it', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await complete(runId, 'fetch', { attempt: 1, next: 'transform' });
    await steps.markHandoffsTaken(db.pool, [{ runId, key: 'transform', attempt: 7 }]);
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ attempts: 1, handoff: true });
    await steps.markHandoffsTaken(db.pool, [{ runId, key: 'transform', attempt: 1 }]);
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ status: 'running', attempts: 1, handoff: false });
    expect(await claim(runId, 'transform', { adopt: true, worker: 'B' })).toMatchObject({ attempt: 2 });
    expect(await attempts(db.pool, runId, 'transform')).toEqual([[1, 'lost', 'A'], [2, 'running', 'B']]);
  });

  it('a handoff is adopted only by its own job', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await complete(runId, 'fetch', { attempt: 1, next: 'transform' });
    expect(await claim(runId, 'transform', { adopt: true, jobId: 'another-job', worker: 'B' })).toMatchObject({ attempt: 2 });
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ attempts: 2, handoff: false, job_id: 'another-job' });
    expect(await attempts(db.pool, runId, 'transform')).toEqual([[1, 'lost', 'A'], [2, 'running', 'B']]);
  });
});

describe('failStep', () => {
  it('a final failure stops the steps overlapped with it (cancelled, "stopped"), and the cancel poll sees the run', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await steps.claimStep(db.pool, { runId, key: 'transform', generation: 0, jobId: `${runId}.g0.transform`, worker: 'A', groupHead: 0 });
    expect(await fail(runId, 'transform', { attempt: 1, final: true })).toBe(true);
    expect(await stepStatuses(db.pool, runId)).toEqual(['cancelled', 'failed', 'pending']);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ error: 'stopped: step transform failed' });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'cancelled', 'A']]);
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'failed', error: 'transform: boom' });
    expect(await runs.cancelledAmong(db.pool, [runId])).toEqual([runId]);
  });

  it('a retryable failure puts the step back to pending; a final one fails step and run', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    expect(await fail(runId, 'fetch', { attempt: 1 })).toBe(true);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'pending', attempts: 1, error: 'boom', finished_at: null });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'running', error: null });
    await claim(runId, 'fetch');
    expect(await fail(runId, 'fetch', { attempt: 2, final: true })).toBe(true);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'failed', attempts: 2 });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'failed', error: 'fetch: boom' });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'failed', 'A'], [2, 'failed', 'A']]);
  });

  it('refuses a stale attempt, an older generation and a step no longer running', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await claim(runId, 'fetch');
    expect(await fail(runId, 'fetch', { attempt: 1, final: true })).toBe(false);
    expect(await fail(runId, 'fetch', { attempt: 2, generation: 1, final: true })).toBe(false);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'running', attempts: 2, error: null });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'lost', 'A'], [2, 'running', 'A']]);
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'running', error: null });

    await runs.cancelRun(db.pool, runId, 'test');
    expect(await fail(runId, 'fetch', { attempt: 2, final: true })).toBe(false);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'cancelled', error: null });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'cancelled', error: 'test' });
  });
});

describe('releaseStep and stepOutputs', () => {
  it('releases the current attempt only; the next claim gets a new attempt number', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await claim(runId, 'fetch');
    await steps.releaseStep(db.pool, { runId, key: 'fetch', attempt: 1 });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'running', attempts: 2 });
    await steps.releaseStep(db.pool, { runId, key: 'fetch', attempt: 2 });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'pending', attempts: 2, handoff: false });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'lost', 'A'], [2, 'released', 'A']]);
    expect(await claim(runId, 'fetch')).toMatchObject({ attempt: 3 });
  });

  it('stepOutputs returns the succeeded steps only', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await complete(runId, 'fetch', { attempt: 1, output: { ref: 'f' }, rowsOut: 2, next: 'transform' });
    const out = await steps.stepOutputs(db.pool, runId);
    expect([...out.keys()]).toEqual(['fetch']);
    expect(out.get('fetch')).toMatchObject({ output: { ref: 'f' }, rowsIn: null, rowsOut: 2 });
  });
});
