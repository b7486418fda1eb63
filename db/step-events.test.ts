import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../test/helpers';
import { insertRun } from './runs';
import { appendStepEvents, listStepEvents, STEP_EVENTS_MAX, type StepEvent } from './step-events';

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase([{ id: 'p', workflow: 'demo', description: '', cron: '0 0 * * *', timezone: 'UTC', config: {} }]);
});
afterAll(async () => db?.drop());

const ev = (i: number): StepEvent => ({ at: new Date().toISOString(), type: 'page', message: `page ${i}`, data: { startindex: i } });

describe('step event log', () => {
  it('keeps the newest 200 events of an attempt and counts the dropped ones', async () => {
    const runId = randomUUID();
    await insertRun(db.pool, { id: runId, pipelineId: 'p', trigger: 'manual', params: {}, exclusive: false, steps: [{ key: 'fetch', position: 0, status: 'pending' }] });
    await db.pool.query(`insert into etl_step_attempts (run_id, step_key, attempt, status) values ($1, 'fetch', 1, 'failed'), ($1, 'fetch', 2, 'running')`, [runId]);
    await appendStepEvents(db.pool, { runId, key: 'fetch', attempt: 1, events: Array.from({ length: 150 }, (_, i) => ev(i)), dropped: 0 });
    await appendStepEvents(db.pool, { runId, key: 'fetch', attempt: 1, events: Array.from({ length: 100 }, (_, i) => ev(150 + i)), dropped: 7 });
    await appendStepEvents(db.pool, { runId, key: 'fetch', attempt: 2, events: [ev(0)], dropped: 0 });
    const all = (await listStepEvents(db.pool, runId, 'fetch'))!;
    expect(all.map((a) => [a.attempt, a.events.length, a.dropped])).toEqual([[2, 1, 0], [1, STEP_EVENTS_MAX, 57]]);
    expect(all[1].events[0].message).toBe('page 50');
    expect(all[1].events.at(-1)!.message).toBe('page 249');
    expect((await listStepEvents(db.pool, runId, 'fetch', 2))!.map((a) => a.attempt)).toEqual([2]);
    expect(await listStepEvents(db.pool, runId, 'nope')).toBeNull();
    expect(await listStepEvents(db.pool, runId, 'fetch', 9)).toEqual([]);
  });
});
