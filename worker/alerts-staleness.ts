import type { Redis } from 'ioredis';
import type { PipelineRow } from '../db/pipelines';
import { nextFireTimes } from '../lib/cron';

/**
 * A minimal dataset-freshness evaluation for alerts (SPEC §11/§12), kept in one module so
 * it can be swapped for issue 11's freshness rules: a dataset is stale when the age of its
 * `cache:<dataset>:meta` `updatedAt` exceeds maxAge = config `freshness.maxAgeSeconds`, or
 * twice the longest gap between consecutive fire times of the pipeline's cron over the
 * next week. A dataset with no meta has never been published: no alert.
 */
export interface DatasetFreshness {
  dataset: string;
  pipelineId: string;
  status: 'fresh' | 'stale' | 'never';
  ageSeconds: number | null;
  maxAgeSeconds: number | null;
  updatedAt: string | null;
  runId: string | null;
}

/** The Redis datasets a pipeline publishes, from its config (`datasets[].dataset`, `dataset`). */
export function datasetsOf(config: Record<string, unknown>): string[] {
  const out = new Set<string>();
  if (typeof config.dataset === 'string') out.add(config.dataset);
  if (Array.isArray(config.datasets)) {
    for (const d of config.datasets) if (d && typeof (d as { dataset?: unknown }).dataset === 'string') out.add((d as { dataset: string }).dataset);
  }
  return [...out];
}

const WEEK_MS = 7 * 24 * 3_600_000;
const gapCache = new Map<string, { at: number; gapMs: number | null }>();

/** The longest gap between consecutive fire times over the next week (cached for an hour). */
export function longestGapMs(cron: string, tz: string, now = Date.now()): number | null {
  const key = `${cron}|${tz}`;
  const hit = gapCache.get(key);
  if (hit && now - hit.at < 3_600_000) return hit.gapMs;
  let gapMs: number | null = null;
  try {
    // One tick a minute for a week is 10,080 ticks; a few more covers the gap past the week's end.
    const times = nextFireTimesWithin(cron, tz, new Date(now), now + WEEK_MS, 10_100);
    for (let i = 1; i < times.length; i++) gapMs = Math.max(gapMs ?? 0, times[i] - times[i - 1]);
  } catch {
    gapMs = null; // an invalid schedule: only an explicit maxAge applies
  }
  gapCache.set(key, { at: now, gapMs });
  return gapMs;
}

function nextFireTimesWithin(cron: string, tz: string, from: Date, untilMs: number, cap: number): number[] {
  const out: number[] = [];
  let after = from;
  while (out.length < cap) {
    const batch = nextFireTimes(cron, tz, after, 500).map((d) => d.getTime());
    for (const t of batch) {
      out.push(t);
      if (t > untilMs) return out;
    }
    after = new Date(batch[batch.length - 1]);
  }
  return out;
}

export function maxAgeSeconds(p: Pick<PipelineRow, 'cron' | 'timezone' | 'config'>, now = Date.now()): number | null {
  const configured = (p.config as { freshness?: { maxAgeSeconds?: unknown } }).freshness?.maxAgeSeconds;
  if (typeof configured === 'number' && configured > 0) return configured;
  const gap = longestGapMs(p.cron, p.timezone, now);
  return gap === null ? null : Math.round((2 * gap) / 1000);
}

function parseMeta(raw: string | null): { updatedAt?: string; runId?: string } | null {
  if (!raw) return null;
  try {
    return JSON.parse(raw) as { updatedAt?: string; runId?: string };
  } catch {
    return null;
  }
}

export async function evaluateFreshness(redis: Redis, pipelines: readonly PipelineRow[], now = Date.now()): Promise<DatasetFreshness[]> {
  const list = pipelines.flatMap((p) => datasetsOf(p.config).map((dataset) => ({ dataset, p })));
  if (list.length === 0) return [];
  const metas = await redis.mget(...list.map((d) => `cache:${d.dataset}:meta`));
  return list.map(({ dataset, p }, i) => {
    const meta = parseMeta(metas[i]);
    const updated = meta?.updatedAt ? Date.parse(meta.updatedAt) : NaN;
    const maxAge = maxAgeSeconds(p, now);
    if (!Number.isFinite(updated)) return { dataset, pipelineId: p.id, status: 'never', ageSeconds: null, maxAgeSeconds: maxAge, updatedAt: null, runId: null };
    const age = Math.max(0, Math.round((now - updated) / 1000));
    return {
      dataset, pipelineId: p.id, status: maxAge !== null && age > maxAge ? 'stale' : 'fresh', ageSeconds: age, maxAgeSeconds: maxAge,
      updatedAt: new Date(updated).toISOString(), runId: meta?.runId ?? null,
    };
  });
}
