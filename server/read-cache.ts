import type { SubscribeEvents } from './context';

/**
 * A short-lived cache of serialised read responses (the drilldown, the pipelines list),
 * invalidated by the run/step event stream, so many operators (or a page refreshing on
 * every event) cost one query and one serialisation instead of one each. Concurrent
 * misses of one key share a single load. A load that raced an invalidation is not
 * stored. `ttlMs` bounds staleness for changes that emit no event (a schedule edited
 * through another api replica). Without an event stream there is no cache.
 */
export interface ReadCache {
  get(key: string, load: () => Promise<string | null>): Promise<string | null>;
  /** Forget everything about a run, and the pipeline lists that show it. */
  invalidateRun(runId: string, pipelineId?: string): void;
  invalidatePipeline(pipelineId: string): void;
  close(): void;
}

interface Entry {
  at: number;
  value: Promise<string | null>;
}

export function createReadCache(subscribe: SubscribeEvents | undefined, opts: { ttlMs?: number; maxEntries?: number } = {}): ReadCache {
  const ttl = opts.ttlMs ?? 1_000;
  const max = opts.maxEntries ?? 5_000;
  const entries = new Map<string, Entry>();
  let epoch = 0; // bumped by every invalidation: a load that saw an older epoch is not kept

  const dropPrefix = (prefix: string) => {
    for (const k of entries.keys()) if (k.startsWith(prefix)) entries.delete(k);
  };
  const invalidatePipeline = (pipelineId: string) => {
    epoch++;
    entries.delete('pipelines');
    entries.delete(`pipeline:${pipelineId}`);
  };
  const invalidateRun = (runId: string, pipelineId?: string) => {
    epoch++;
    dropPrefix(`run:${runId}`);
    if (pipelineId) invalidatePipeline(pipelineId);
    else {
      entries.delete('pipelines');
      dropPrefix('pipeline:');
    }
  };
  const unsubscribe = subscribe?.((data) => {
    try {
      const e = JSON.parse(data) as { runId?: string; pipelineId?: string };
      if (e.runId) invalidateRun(e.runId, e.pipelineId);
    } catch {
      entries.clear();
    }
  }, () => entries.clear());

  return {
    async get(key, load) {
      if (!unsubscribe) return load();
      const hit = entries.get(key);
      if (hit && Date.now() - hit.at < ttl) return hit.value;
      const started = epoch;
      const value = load();
      const entry = { at: Date.now(), value };
      entries.set(key, entry);
      if (entries.size > max) entries.delete(entries.keys().next().value!);
      value.then(
        () => {
          if (epoch !== started && entries.get(key) === entry) entries.delete(key);
        },
        () => {
          if (entries.get(key) === entry) entries.delete(key);
        },
      );
      return value;
    },
    invalidateRun,
    invalidatePipeline,
    close() {
      unsubscribe?.();
      entries.clear();
    },
  };
}
