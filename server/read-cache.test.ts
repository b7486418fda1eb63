import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SubscribeEvents } from './context';
import { createReadCache } from './read-cache';

/** The read cache's rules, with a hand-driven event source and a faked clock (only Date:
 *  promises and timers run as usual). */
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

function source() {
  let listener: ((data: string) => void) | undefined;
  const subscribe: SubscribeEvents = (l) => {
    listener = l;
    return () => (listener = undefined);
  };
  return { subscribe, emit: (e: object) => listener?.(JSON.stringify(e)) };
}
const deferred = () => {
  let resolve!: (v: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  return { promise, resolve };
};

describe('read cache', () => {
  it('shares one load among concurrent readers and serves it until an event about the run', async () => {
    const src = source();
    const cache = createReadCache(src.subscribe, { ttlMs: 60_000 });
    let loads = 0;
    const load = () => Promise.resolve(`v${++loads}`);
    const got = await Promise.all([1, 2, 3].map(() => cache.get('run:a', load)));
    expect(got).toEqual(['v1', 'v1', 'v1']);
    expect(await cache.get('run:a', load)).toBe('v1');
    src.emit({ type: 'step', runId: 'b', pipelineId: 'p' });
    expect(await cache.get('run:a', load)).toBe('v1');
    src.emit({ type: 'step', runId: 'a', pipelineId: 'p' });
    expect(await cache.get('run:a', load)).toBe('v2');
  });

  it('does not keep a load that raced an invalidation', async () => {
    const src = source();
    const cache = createReadCache(src.subscribe, { ttlMs: 60_000 });
    const slow = deferred();
    const first = cache.get('run:a', () => slow.promise);
    src.emit({ type: 'run', runId: 'a', pipelineId: 'p' });
    slow.resolve('before the change');
    expect(await first).toBe('before the change');
    expect(await cache.get('run:a', () => Promise.resolve('after'))).toBe('after');
  });

  it('drops pipeline lists on any run event of the pipeline; past its TTL an entry is served while it refreshes', async () => {
    const src = source();
    const cache = createReadCache(src.subscribe, { ttlMs: 1 });
    expect(await cache.get('pipelines', () => Promise.resolve('a'))).toBe('a');
    vi.advanceTimersByTime(5); // past the 1 ms TTL, on the faked clock
    const next = deferred();
    expect(await cache.get('pipelines', () => next.promise)).toBe('a'); // stale, refresh started
    expect(await cache.get('pipelines', () => Promise.resolve('never'))).toBe('a'); // one refresh at a time
    next.resolve('b');
    await next.promise;
    await Promise.resolve();
    expect(await cache.get('pipelines', () => Promise.resolve('c'))).toBe('b');
    const fresh = createReadCache(src.subscribe, { ttlMs: 60_000 });
    await fresh.get('pipelines', () => Promise.resolve('x'));
    src.emit({ type: 'run', runId: 'r', pipelineId: 'p' });
    expect(await fresh.get('pipelines', () => Promise.resolve('y'))).toBe('y');
  });

  it('a refresh that raced an unrelated invalidation is dropped, and the next read refreshes again', async () => {
    const src = source();
    const cache = createReadCache(src.subscribe, { ttlMs: 1 });
    await cache.get('run:a', () => Promise.resolve('v1'));
    vi.advanceTimersByTime(5);
    const slow = deferred();
    expect(await cache.get('run:a', () => slow.promise)).toBe('v1');
    src.emit({ type: 'step', runId: 'other', pipelineId: 'p' });
    slow.resolve('v2-maybe-stale');
    await slow.promise;
    await Promise.resolve();
    const again = deferred();
    expect(await cache.get('run:a', () => again.promise)).toBe('v1');
    again.resolve('v3');
    await again.promise;
    await Promise.resolve();
    expect(await cache.get('run:a', () => Promise.resolve('v4'))).toBe('v3');
  });

  it('is off without an event stream', async () => {
    const cache = createReadCache(undefined);
    let n = 0;
    await cache.get('k', () => Promise.resolve(`${n++}`));
    expect(await cache.get('k', () => Promise.resolve(`${n++}`))).toBe('1');
  });
});
