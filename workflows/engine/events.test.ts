import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createEventBus, EVENTS_MESSAGE_MAX, eventsOf } from './events';

/** A Redis that records what is published, alone or in a pipeline. */
function fakeRedis() {
  const sent: string[] = [];
  const redis = {
    publish: (_channel: string, m: string) => (sent.push(m), Promise.resolve(1)),
    pipeline: () => {
      const p = { publish: (_c: string, m: string) => (sent.push(m), p), exec: () => Promise.resolve([]) };
      return p;
    },
  };
  return { sent, redis: redis as unknown as Redis };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('event bus', () => {
  it('sends a lone event as itself, and the events of one turn as one array message, in order', async () => {
    const { sent, redis } = fakeRedis();
    const bus = createEventBus(redis, 'q');
    bus.run('r1', 'p', 'running');
    await turn();
    expect(sent).toHaveLength(1);
    expect(JSON.parse(sent[0])).toMatchObject({ type: 'run', runId: 'r1', status: 'running' });
    bus.step('r1', 'p', 'fetch', 'succeeded', 1);
    bus.step('r1', 'p', 'transform', 'running', 1);
    bus.run('r1', 'p', 'succeeded');
    await turn();
    expect(sent).toHaveLength(2);
    expect(eventsOf(JSON.parse(sent[1]))).toMatchObject([
      { type: 'step', step: 'fetch', status: 'succeeded' }, { type: 'step', step: 'transform', status: 'running' },
      { type: 'run', status: 'succeeded' },
    ]);
  });

  it('splits a large turn into messages no longer than EVENTS_MESSAGE_MAX, losing none', async () => {
    const { sent, redis } = fakeRedis();
    const bus = createEventBus(redis, 'q');
    for (let i = 0; i < 500; i++) bus.step(`run-${i}`, 'p', 'fetch', 'running', 1);
    await turn();
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.every((m) => m.length <= EVENTS_MESSAGE_MAX)).toBe(true);
    expect(sent.flatMap((m) => eventsOf(JSON.parse(m)) as { runId: string }[]).map((e) => e.runId))
      .toEqual(Array.from({ length: 500 }, (_, i) => `run-${i}`));
  });
});
