import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertBlob } from '../db/blobs';
import { claimStep, completeStep, failStep, saveCheckpoint } from '../db/steps';
import { StepAbortedError, StepYieldError, NonRetryableError } from '../lib/errors';
import { freshDatabase } from '../test/helpers';
import { newRun, seed } from '../test/run-rows';
import { EpochMoved, Upstream } from './stream';

/** Following a producer step's announced chunks (steps/stream.ts) against real Postgres. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase([seed('p')]);
});
afterAll(async () => db?.drop());

const signal = new AbortController().signal;
const claimFetch = (runId: string) => claimStep(db.pool, { runId, key: 'fetch', generation: 0, jobId: `${runId}.g0.fetch`, worker: 'A' });
const announce = (runId: string, attempt: number, streams: Record<string, unknown>) =>
  saveCheckpoint(db.pool, { runId, key: 'fetch', attempt, checkpoint: { streams } });
const chunk = (runId: string, name: string, seq: number, text: string) => insertBlob(db.pool, { runId, name, seq, rows: 1, data: text });

describe('Upstream', () => {
  it('follows announced chunks as they are committed, and ends at the closed count', async () => {
    const runId = await newRun(db.pool, 'p');
    await claimFetch(runId);
    const up = new Upstream(db, runId, 'fetch', signal);
    await announce(runId, 1, { rows: { runId, name: 'fetch.rows.a1', attempt: 1 } });
    const pos = await up.position('rows');
    expect(pos).toEqual({ id: { runId, name: 'fetch.rows.a1' } });
    await chunk(runId, 'fetch.rows.a1', 0, 'a\n');
    expect((await up.chunk('rows', pos.id, 0))?.toString()).toBe('a\n');
    // Chunk 1 arrives while the consumer waits for it.
    const waiting = up.chunk('rows', pos.id, 1);
    setTimeout(() => void chunk(runId, 'fetch.rows.a1', 1, 'b\n'), 100);
    expect((await waiting)?.toString()).toBe('b\n');
    await announce(runId, 1, { rows: { runId, name: 'fetch.rows.a1', attempt: 1, chunks: 2, rows: 2 } });
    expect(await up.chunk('rows', pos.id, 2)).toBeNull();
  });

  it('says EpochMoved when the producer starts a new attempt, and the new epoch after', async () => {
    const runId = await newRun(db.pool, 'p');
    await claimFetch(runId);
    await announce(runId, 1, { rows: { runId, name: 'fetch.rows.a1', attempt: 1 } });
    const up = new Upstream(db, runId, 'fetch', signal);
    const first = await up.position('rows');
    await claimFetch(runId); // attempt 2: the announcement of attempt 1 is stale
    await expect(up.chunk('rows', first.id, 0)).rejects.toBeInstanceOf(EpochMoved);
    await announce(runId, 2, { rows: { runId, name: 'fetch.rows.a2', attempt: 2 } });
    expect((await up.position('rows')).id.name).toBe('fetch.rows.a2');
  });

  it('hands the step back when the producer is not running for 2 s', async () => {
    const runId = await newRun(db.pool, 'p'); // fetch pending, never claimed
    const t0 = Date.now();
    await expect(new Upstream(db, runId, 'fetch', signal).position('rows')).rejects.toBeInstanceOf(StepYieldError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_000);
  });

  it('fails for good when the producer failed for good; stops when the run is cancelled', async () => {
    const runId = await newRun(db.pool, 'p');
    await claimFetch(runId);
    await failStep(db.pool, { runId, key: 'fetch', generation: 0, attempt: 1, error: 'source down', stack: null, final: true });
    await expect(new Upstream(db, runId, 'fetch', signal).position('rows')).rejects.toThrow(NonRetryableError);
    await expect(new Upstream(db, runId, 'fetch', signal).position('rows')).rejects.toThrow(/step fetch failed: source down/);
    const other = await newRun(db.pool, 'p');
    await claimFetch(other);
    await db.pool.query(`update etl_runs set status = 'cancelled' where id = $1`, [other]);
    await expect(new Upstream(db, other, 'fetch', signal).position('rows')).rejects.toBeInstanceOf(StepAbortedError);
  });

  it('reads a succeeded producer from its output', async () => {
    const runId = await newRun(db.pool, 'p');
    await claimFetch(runId);
    const ref = { kind: 'staged', runId, name: 'fetch.rows.a1', chunks: 1, rows: 1 };
    await chunk(runId, 'fetch.rows.a1', 0, 'x\n');
    await completeStep(db.pool, { runId, key: 'fetch', generation: 0, attempt: 1, output: { datasets: { rows: ref } }, rowsIn: null, rowsOut: 1, last: false });
    const up = new Upstream(db, runId, 'fetch', signal);
    const pos = await up.position('rows');
    expect(pos).toEqual({ id: { runId, name: 'fetch.rows.a1' }, closed: { chunks: 1, rows: 1 } });
    expect((await up.chunk('rows', pos.id, 0))?.toString()).toBe('x\n');
    expect(await up.chunk('rows', pos.id, 1)).toBeNull();
    expect(await up.finished()).toEqual({ datasets: { rows: ref } });
  });
});
