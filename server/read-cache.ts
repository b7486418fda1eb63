import type { SubscribeEvents } from './context';

/**
 * A short-lived cache of serialised read responses (the drilldown, the pipelines list),
 * invalidated by the run/step event stream, so many operators (or a page refreshing on
 * every event) cost one query and one serialisation instead of one each. Concurrent
 * misses of one key share a single load. A load that raced an invalidation is not
 * stored. `ttlMs` bounds staleness for changes that emit no event (a schedule edited
 * through another api replica). Without an event stream there is no cache.
 */
/** Responses are cached encoded, so a hit costs no serialisation and no UTF-8 encoding. */
export type Cached = Uint8Array<ArrayBuffer>;
export const jsonBytes = (value: unknown): Cached => new TextEncoder().encode(JSON.stringify(value));

export interface ReadCache {
  get<T extends Cached | string>(key: string, load: () => Promise<T | null>): Promise<T | null>;
  /** Forget everything about a run, and the pipeline lists that show it. */
  invalidateRun(runId: string, pipelineId?: string): void;
  invalidatePipeline(pipelineId: string): void;
  close(): void;
}

interface Entry {
  at: number;
  value: Promise<unknown>;
  settled: boolean;
  refreshing: boolean;
}

/** One cache's entries and its invalidation counter, shared by the functions below. */
interface CacheState {
  entries: Map<string, Entry>;
  max: number;
  epoch: number; // bumped by every invalidation: a load that saw an older epoch is not kept
}

export function createReadCache(subscribe: SubscribeEvents | undefined, opts: { ttlMs?: number; maxEntries?: number } = {}): ReadCache {
  const ttl = opts.ttlMs ?? 1_000;
  const st: CacheState = { entries: new Map(), max: opts.maxEntries ?? 5_000, epoch: 0 };
  const { entries } = st;

  const unsubscribe = subscribe?.((data) => onEvent(st, data), () => entries.clear());

  return {
    async get<T>(key: string, load: () => Promise<T | null>): Promise<T | null> {
      if (!unsubscribe) return load();
      const hit = entries.get(key);
      if (hit && Date.now() - hit.at < ttl) return hit.value as Promise<T | null>;
      // Past its TTL but not invalidated by an event: serve it while one refresh runs, so
      // readers never all queue behind the reload.
      if (hit && hit.settled) {
        if (!hit.refreshing) {
          hit.refreshing = true;
          start(st, key, load, hit);
        }
        return hit.value as Promise<T | null>;
      }
      return start(st, key, load).value as Promise<T | null>;
    },
    invalidateRun: (runId, pipelineId) => invalidateRun(st, runId, pipelineId),
    invalidatePipeline: (pipelineId) => invalidatePipeline(st, pipelineId),
    close() {
      unsubscribe?.();
      entries.clear();
    },
  };
}

function onEvent(st: CacheState, data: string): void {
  try {
    const e = JSON.parse(data) as { type?: string; runId?: string; pipelineId?: string };
    // Live progress changes nothing stored: it must not empty the cache every second.
    if (e.type === 'progress') return;
    if (e.runId) invalidateRun(st, e.runId, e.pipelineId);
    // Settings changed through another api process (a cluster worker or replica).
    else if (e.type === 'pipeline' && e.pipelineId) invalidatePipeline(st, e.pipelineId);
  } catch {
    st.entries.clear();
  }
}

function dropPrefix(st: CacheState, prefix: string): void {
  for (const k of st.entries.keys()) if (k.startsWith(prefix)) st.entries.delete(k);
}

function invalidatePipeline(st: CacheState, pipelineId: string): void {
  st.epoch++;
  st.entries.delete('pipelines');
  st.entries.delete(`pipeline:${pipelineId}`);
}

function invalidateRun(st: CacheState, runId: string, pipelineId?: string): void {
  st.epoch++;
  dropPrefix(st, `run:${runId}`);
  if (pipelineId) invalidatePipeline(st, pipelineId);
  else {
    st.entries.delete('pipelines');
    dropPrefix(st, 'pipeline:');
  }
}

/** Loads `key`; the result replaces `previous` (if still current) once it arrives. */
function start(st: CacheState, key: string, load: () => Promise<unknown>, previous?: Entry): Entry {
  const { entries } = st;
  const started = st.epoch;
  const entry: Entry = { at: Date.now(), value: load(), settled: false, refreshing: false };
  if (!previous) {
    entries.set(key, entry);
    if (entries.size > st.max) entries.delete(entries.keys().next().value!);
  }
  entry.value.then(
    () => {
      entry.settled = true;
      const current = entries.get(key);
      if (st.epoch !== started) {
        // Something was invalidated meanwhile: this result may predate it. Drop it; a
        // refreshed entry that is still current refreshes again on the next read.
        if (current === entry) entries.delete(key);
        if (previous && current === previous) previous.refreshing = false;
      } else if (previous && current === previous) entries.set(key, entry);
    },
    () => {
      if (entries.get(key) === entry) entries.delete(key);
      if (previous && entries.get(key) === previous) previous.refreshing = false;
    },
  );
  return entry;
}
