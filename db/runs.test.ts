import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../test/helpers';
import { attempts, KEYS, newRun, runRow, seed, stepRow, stepStatuses } from '../test/run-rows';
import * as runs from './runs';
import * as steps from './steps';

/**
 * The run-level guards against a real Postgres: each transition moves only from the
 * statuses (and generation) its WHERE names, and a refused one changes no row.
 */

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase([seed('p'), seed('x')]);
});
afterAll(async () => db?.drop());

const claim = (runId: string, key: string, generation = 0) =>
  steps.claimStep(db.pool, { runId, key, generation, jobId: `${runId}.g${generation}.${key}`, worker: 'A' });

/** A run whose three steps have all succeeded through claims and completions (still running). */
async function allStepsDone(): Promise<string> {
  const runId = await newRun(db.pool, 'p');
  for (const [i, key] of KEYS.entries()) {
    await claim(runId, key);
    await steps.completeStep(db.pool, {
      runId, key, generation: 0, attempt: 1, output: null, rowsIn: null, rowsOut: 10 - i, last: false,
    });
  }
  return runId;
}

describe('insertRun / insertRuns', () => {
  it('inserts a queued run on generation 0 with its steps as given', async () => {
    const runId = await newRun(db.pool, 'p', {
      steps: [
        { key: 'fetch', position: 0, status: 'succeeded', output: { ref: 'old' }, rowsOut: 4 },
        { key: 'transform', position: 1, status: 'pending' },
      ],
    });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'queued', generation: 0, finished_at: null });
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'succeeded', output: { ref: 'old' }, rows_out: 4, attempts: 0 });
    expect(await stepStatuses(db.pool, runId)).toEqual(['succeeded', 'pending']);
  });

  it('insertRuns leaves out a second active exclusive run and a tick that already has its run', async () => {
    const tick = new Date('2030-01-01T00:00:00Z');
    const mk = (o: Partial<runs.NewRun>): runs.NewRun => ({
      id: randomUUID(), pipelineId: 'x', trigger: 'schedule', params: {}, exclusive: true, scheduledFor: tick,
      steps: [{ key: 'fetch', position: 0, status: 'pending' }], ...o,
    });
    const a = mk({});
    const b = mk({ scheduledFor: new Date('2030-01-01T00:01:00Z') }); // exclusive: x already has an active run
    const c = mk({ exclusive: false }); // same tick as a
    const d = mk({ exclusive: false, scheduledFor: new Date('2030-01-01T00:02:00Z') });
    expect(await runs.insertRuns(db.pool, [a, b, c, d])).toEqual(new Set([a.id, d.id]));
    const { rows } = await db.pool.query('select id from etl_runs where pipeline_id = $1 order by id', ['x']);
    expect(rows.map((r) => r.id).sort()).toEqual([a.id, d.id].sort());
    expect((await db.pool.query('select count(*)::int as n from etl_run_steps where run_id = any($1::uuid[])', [[b.id, c.id]])).rows[0].n).toBe(0);
    for (const id of [a.id, d.id]) await runs.cancelRun(db.pool, id, 'cleanup');
  });
});

describe('finishRun', () => {
  it('refuses while a step has not succeeded', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    expect(await runs.finishRun(db.pool, { runId, generation: 0 })).toBeNull();
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'running', finished_at: null, rows: null });
  });

  it('refuses another generation, then succeeds on the right one, once', async () => {
    const runId = await allStepsDone();
    expect(await runs.finishRun(db.pool, { runId, generation: 1 })).toBeNull();
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'running', finished_at: null });

    expect(await runs.finishRun(db.pool, { runId, generation: 0 })).toBe('p');
    const done = await runRow(db.pool, runId);
    expect(done).toMatchObject({ status: 'succeeded', rows: { in: 10, out: 8 }, error: null });
    expect(done.finished_at).toBeInstanceOf(Date);
    // From succeeded it refuses: the row keeps its first finish.
    expect(await runs.finishRun(db.pool, { runId, generation: 0 })).toBeNull();
    expect((await runRow(db.pool, runId)).updated_at).toEqual(done.updated_at);
  });

  it('refuses a cancelled run even with every step succeeded', async () => {
    const runId = await allStepsDone();
    await runs.cancelRun(db.pool, runId, 'late cancel');
    expect(await runs.finishRun(db.pool, { runId, generation: 0 })).toBeNull();
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'cancelled', error: 'late cancel', rows: null });
  });
});

describe('cancelRun', () => {
  it('cancels a running run with its unfinished steps and running attempt; succeeded steps stay', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await steps.completeStep(db.pool, {
      runId, key: 'fetch', generation: 0, attempt: 1, output: { ref: 'f' }, rowsIn: null, rowsOut: 1, last: false,
      next: { key: 'transform', jobId: `${runId}.g0.transform`, worker: 'A' },
    });
    expect(await runs.cancelRun(db.pool, runId, 'operator')).toEqual({ pipelineId: 'p', generation: 0 });
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'cancelled', error: 'operator' });
    expect(await stepStatuses(db.pool, runId)).toEqual(['succeeded', 'cancelled', 'cancelled']);
    expect(await stepRow(db.pool, runId, 'transform')).toMatchObject({ handoff: false });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'succeeded', 'A']]);
    expect(await attempts(db.pool, runId, 'transform')).toEqual([[1, 'cancelled', 'A']]);
  });

  it('refuses a run that is no longer queued or running, changing nothing', async () => {
    const cancelled = await newRun(db.pool, 'p');
    await runs.cancelRun(db.pool, cancelled, 'first');
    const before = await runRow(db.pool, cancelled);
    expect(await runs.cancelRun(db.pool, cancelled, 'second')).toBeNull();
    expect(await runRow(db.pool, cancelled)).toEqual(before);

    const succeeded = await allStepsDone();
    await runs.finishRun(db.pool, { runId: succeeded, generation: 0 });
    expect(await runs.cancelRun(db.pool, succeeded, 'too late')).toBeNull();
    expect(await runRow(db.pool, succeeded)).toMatchObject({ status: 'succeeded', error: null });
    expect(await stepStatuses(db.pool, succeeded)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(await runs.cancelRun(db.pool, randomUUID(), 'no such run')).toBeNull();
  });
});

describe('requeueRun', () => {
  it('puts a failed run back on the next generation: unfinished steps pending, succeeded ones kept', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await steps.completeStep(db.pool, { runId, key: 'fetch', generation: 0, attempt: 1, output: { ref: 'f' }, rowsIn: null, rowsOut: 1, last: false });
    await claim(runId, 'transform');
    await steps.failStep(db.pool, { runId, key: 'transform', generation: 0, attempt: 1, error: 'boom', stack: null, final: true });
    expect(await runs.requeueRun(db.pool, runId, 0)).toBe(1);
    expect(await runRow(db.pool, runId)).toMatchObject({ status: 'queued', generation: 1, error: null, finished_at: null });
    expect(await stepStatuses(db.pool, runId)).toEqual(['succeeded', 'pending', 'pending']);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ output: { ref: 'f' } });
    // The old generation's jobs are fenced off; the new one's claim gets a new attempt.
    expect(await claim(runId, 'transform', 0)).toBeNull();
    expect(await claim(runId, 'transform', 1)).toMatchObject({ attempt: 2, outputs: { fetch: { ref: 'f' } } });
  });

  it('rebuilding a stuck running run marks its running attempt lost', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    expect(await runs.requeueRun(db.pool, runId, 0)).toBe(1);
    expect(await stepRow(db.pool, runId, 'fetch')).toMatchObject({ status: 'pending', attempts: 1 });
    expect(await attempts(db.pool, runId, 'fetch')).toEqual([[1, 'lost', 'A']]);
  });

  it('throws on a stale generation and changes nothing (two rebuilds cannot both bump it)', async () => {
    const runId = await newRun(db.pool, 'p');
    await claim(runId, 'fetch');
    await runs.requeueRun(db.pool, runId, 0);
    const before = await runRow(db.pool, runId);
    await expect(runs.requeueRun(db.pool, runId, 0)).rejects.toThrow(/changed while being requeued/);
    expect(await runRow(db.pool, runId)).toEqual(before);
  });

  it('refuses to make a second exclusive run of a pipeline active (unique rule), changing nothing', async () => {
    const old = await newRun(db.pool, 'x', { exclusive: true });
    await runs.cancelRun(db.pool, old, 'first');
    const active = await newRun(db.pool, 'x', { exclusive: true });
    await expect(runs.requeueRun(db.pool, old, 0)).rejects.toMatchObject({ code: '23505' });
    expect(await runRow(db.pool, old)).toMatchObject({ status: 'cancelled', generation: 0 });
    expect(await stepStatuses(db.pool, old)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    await runs.cancelRun(db.pool, active, 'cleanup');
  });
});

describe('reads', () => {
  it('getRunState, listActiveRuns, cancelledAmong and runParams', async () => {
    const queued = await newRun(db.pool, 'p', { params: { day: '2030-01-01' } });
    const cancelled = await newRun(db.pool, 'p');
    await runs.cancelRun(db.pool, cancelled, 'x');
    const state = await runs.getRunState(db.pool, queued);
    expect(state).toMatchObject({ id: queued, pipelineId: 'p', status: 'queued', generation: 0 });
    expect(state!.steps.map((s) => [s.key, s.position, s.status, s.attempts, s.jobId]))
      .toEqual(KEYS.map((k, i) => [k, i, 'pending', 0, null]));
    expect(await runs.getRunState(db.pool, randomUUID())).toBeNull();

    // Too young for the grace period, then old enough; never the cancelled one.
    expect((await runs.listActiveRuns(db.pool, 60_000)).map((r) => r.id)).not.toContain(queued);
    const active = await runs.listActiveRuns(db.pool, 0);
    expect(active).toContainEqual({ id: queued, generation: 0, status: 'queued' });
    expect(active.map((r) => r.id)).not.toContain(cancelled);

    expect(await runs.cancelledAmong(db.pool, [queued, cancelled])).toEqual([cancelled]);
    expect(await runs.cancelledAmong(db.pool, [])).toEqual([]);
    expect(await runs.runParams(db.pool, queued)).toEqual({ day: '2030-01-01' });
    expect(await runs.runParams(db.pool, randomUUID())).toEqual({});
  });
});
