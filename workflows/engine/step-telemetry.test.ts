import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Database } from '../../db/client';
import { silentLog } from '../../test/helpers';
import type { EventBus, ProgressEvent } from './events';
import { registerSecret } from '../../lib/redact';
import { createStepTelemetry } from './step-telemetry';

/** Live progress at most once a second (latest figures win); events buffered, bounded,
 *  and written in batches, not one statement each. */
function setup() {
  const sent: ProgressEvent[] = [];
  const queries: { values: unknown[] }[] = [];
  const at: number[] = [];
  const events = { run() {}, step() {}, pipeline() {}, progress: (p: ProgressEvent) => void (sent.push(p), at.push(Date.now())) } satisfies EventBus;
  const db = { pool: { query: (q: { values: unknown[] }) => { queries.push(q); return Promise.resolve({ rows: [], rowCount: 1 }); } } } as unknown as Database;
  const t = createStepTelemetry({ db, events, log: silentLog, runId: 'r', pipelineId: 'p', key: 'fetch', attempt: 1 });
  return { t, sent, at, queries };
}

afterEach(() => void vi.useRealTimers());

describe('step telemetry', () => {
  it('sends progress at most once a second, with the latest figures and a rate', async () => {
    vi.useFakeTimers();
    const { t, sent, at } = setup();
    t.progress({ rowsDone: 0, rowsTotal: 10_000 });
    for (let i = 1; i <= 100; i++) {
      vi.advanceTimersByTime(25);
      t.progress({ rowsDone: i * 10 });
    }
    // 2.5 s of updates every 25 ms: the first at once, then one a second, the last one
    // (trailing) carrying the final figures.
    vi.advanceTimersByTime(1_000);
    expect(sent.length).toBe(4);
    for (let i = 1; i < at.length; i++) expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(1_000);
    expect(sent.at(-1)).toMatchObject({ runId: 'r', step: 'fetch', rowsDone: 1_000, rowsTotal: 10_000 });
    expect(sent.at(-1)!.rowsPerSec).toBeGreaterThan(300);
    await t.close();
    t.progress({ rowsDone: 5 });
    vi.advanceTimersByTime(2_000);
    expect(sent.length).toBe(4);
  });

  it('buffers events (at most 200, dropping the oldest) and writes them in one statement', async () => {
    vi.useFakeTimers();
    const { t, queries } = setup();
    for (let i = 0; i < 250; i++) t.event('page', `page ${i}`, { startindex: i });
    expect(queries).toHaveLength(0);
    await t.flush();
    expect(queries).toHaveLength(1);
    const [, , , json, dropped] = queries[0].values as [string, string, number, string, number];
    expect(JSON.parse(json)).toHaveLength(200);
    expect(JSON.parse(json)[0].message).toBe('page 50');
    expect(dropped).toBe(50);
    await t.flush(); // nothing buffered: no statement
    expect(queries).toHaveLength(1);
    t.event('retry', 'x');
    await vi.advanceTimersByTimeAsync(5_000); // the periodic flush
    expect(queries).toHaveLength(2);
    await t.close();
  });

  it('redacts secrets in an event\'s data as in its message', async () => {
    const secret = 'sk-live-telemetry-0123456789abcdef';
    registerSecret(secret);
    const { t, queries } = setup();
    t.event('retry', `failed with ${secret}`, { reason: `HTTP 401 for key ${secret}`, nested: { list: [secret, 3] }, n: 1 });
    await t.flush();
    const stored = (queries[0].values)[3] as string;
    expect(stored).not.toContain(secret);
    expect(JSON.parse(stored)[0]).toMatchObject({ data: { reason: 'HTTP 401 for key [redacted]', nested: { list: ['[redacted]', 3] }, n: 1 } });
    await t.close();
  });
});
