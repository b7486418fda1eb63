import type { Redis } from 'ioredis';
import type pg from 'pg';
import { pipelinesForFreshness, tableSinkState, type FreshnessPipelineRow } from '../db/datasets';
import { fireTimesBetween, nextFireTimes } from '../lib/cron';
import { redact } from '../lib/redact';
import { freshnessConfigSchema } from '../steps/freshness-config';

/**
 * Datasets and their freshness (SPEC §11), for GET /datasets, /metrics and alerts.
 *
 * A pipeline publishes what its config names: `datasets[].dataset` (a hash, or a string for
 * shape json), `dataset` (Yespo: a hash), `postgres.table` (a table). A dataset's state is
 * read where its writer leaves it: Redis `cache:<dataset>:meta`, or for a table the row of
 * etl_table_sinks the mirror commits with it (else the table itself).
 *
 * What must stay true:
 * - evaluateFreshness is pure (state + now → verdict): alerts call it on a timer and
 *   compare verdicts; nothing here writes.
 * - Stale means age > maxAgeSeconds, whatever the pipeline's state (disabled included);
 *   `reason` explains, it never decides.
 */

export type DatasetKind = 'hash' | 'string' | 'table';
export type FreshnessStatus = 'fresh' | 'stale' | 'never';

export interface PublishedDataset {
  dataset: string;
  key: string;
  kind: DatasetKind;
}

export interface DatasetFreshness extends PublishedDataset {
  pipelineId: string;
  rows: number | null;
  runId: string | null;
  updatedAt: string | null;
  ageSeconds: number | null;
  maxAgeSeconds: number;
  status: FreshnessStatus;
  reason?: string;
}

const DATASET = /^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$/;
const TABLE = /^[a-z_][a-z0-9_]{0,62}$/;

/** The datasets a pipeline's config publishes, in config order. */
export function publishedDatasets(config: Record<string, unknown>): PublishedDataset[] {
  const out: PublishedDataset[] = [];
  const redisDataset = (name: unknown, kind: DatasetKind) => {
    if (typeof name === 'string' && DATASET.test(name)) out.push({ dataset: name, key: `cache:${name}`, kind });
  };
  if (Array.isArray(config.datasets)) {
    for (const d of config.datasets as { dataset?: unknown; shape?: unknown }[]) redisDataset(d?.dataset, d?.shape === 'json' ? 'string' : 'hash');
  }
  if (typeof config.dataset === 'string') redisDataset(config.dataset, 'hash');
  const table = (config.postgres as { table?: unknown } | undefined)?.table;
  if (typeof table === 'string' && TABLE.test(table)) out.push({ dataset: table, key: table, kind: 'table' });
  return out;
}

const gapCache = new Map<string, { at: number; seconds: number }>();
const WEEK_MS = 7 * 86_400_000;

/** The longest gap between consecutive fire times over the week after `now`, in seconds
 *  (cached a minute per schedule); null for a schedule that cannot be read. */
export function longestCronGapSeconds(cron: string, timezone: string, now = new Date()): number | null {
  const k = `${cron}|${timezone}`;
  const hit = gapCache.get(k);
  if (hit && now.getTime() - hit.at < 60_000 && now.getTime() >= hit.at) return hit.seconds;
  try {
    let times = fireTimesBetween(cron, timezone, now, new Date(now.getTime() + WEEK_MS), 20_000);
    // The gap that crosses the end of the week counts too; fewer than two ticks a week
    // still have a gap between the next two.
    const after = nextFireTimes(cron, timezone, times.at(-1) ?? now, times.length ? 1 : 2);
    times = [...times, ...after];
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i].getTime() - times[i - 1].getTime());
    const seconds = Math.round(gap / 1000);
    if (gapCache.size > 1_000) gapCache.clear();
    gapCache.set(k, { at: now.getTime(), seconds });
    return seconds;
  } catch {
    return null;
  }
}

/** Config `freshness.maxAgeSeconds`, else twice the longest cron gap (a day without one). */
export function maxAgeSeconds(p: Pick<FreshnessPipelineRow, 'cron' | 'timezone' | 'config'>, now = new Date()): number {
  const cfg = freshnessConfigSchema.safeParse(p.config.freshness ?? {});
  if (cfg.success && cfg.data.maxAgeSeconds) return cfg.data.maxAgeSeconds;
  return 2 * (longestCronGapSeconds(p.cron, p.timezone, now) ?? 43_200);
}

export interface DatasetState {
  rows: number | null;
  runId: string | null;
  updatedAt: Date | null;
}

/** The verdict for one dataset: pure, so alerts can evaluate and compare it on a timer. */
export function evaluateFreshness(a: {
  pipeline: Pick<FreshnessPipelineRow, 'enabled' | 'lastRun'>; state: DatasetState | null; maxAgeSeconds: number; now: Date;
}): { status: FreshnessStatus; ageSeconds: number | null; reason?: string } {
  const { pipeline, state, now } = a;
  const last = pipeline.lastRun;
  const why: string[] = [];
  if (!pipeline.enabled) why.push('pipeline disabled');
  if (last?.status === 'failed') why.push(`last run failed (${last.id})${last.error ? `: ${redact(last.error, { max: 200 })}` : ''}`);
  if (last?.status === 'cancelled') why.push(`last run cancelled (${last.id})`);
  if (last && (last.status === 'queued' || last.status === 'running')) why.push('a run is in progress');
  if (!state?.updatedAt) {
    if (!last) why.push('no run yet');
    return { status: 'never', ageSeconds: null, reason: `never published; ${why.join('; ') || 'no run has published it'}` };
  }
  const ageSeconds = Math.max(0, Math.floor((now.getTime() - state.updatedAt.getTime()) / 1000));
  if (ageSeconds <= a.maxAgeSeconds) return { status: 'fresh', ageSeconds };
  if (why.length === 0 || (why.length === 1 && why[0] === 'a run is in progress')) why.push(`no successful run since ${state.updatedAt.toISOString()}`);
  return { status: 'stale', ageSeconds, reason: why.join('; ') };
}

export interface FreshnessDeps {
  db: { pool: Pick<pg.Pool, 'query'> };
  redis: Pick<Redis, 'mget'>;
}

/** Every dataset of every pipeline with its verdict, pipelines in id order. */
export async function listDatasetFreshness(deps: FreshnessDeps, now = new Date()): Promise<DatasetFreshness[]> {
  const pipelines = await pipelinesForFreshness(deps.db.pool);
  const all = pipelines.flatMap((p) => publishedDatasets(p.config).map((d) => ({ p, d })));
  const redisOnes = all.filter((x) => x.d.kind !== 'table');
  const metas = redisOnes.length ? await deps.redis.mget(...redisOnes.map((x) => `${x.d.key}:meta`)) : [];
  const state = new Map<PublishedDataset, DatasetState | null>();
  redisOnes.forEach((x, i) => state.set(x.d, parseMeta(metas[i] ?? null)));
  for (const x of all) {
    if (x.d.kind === 'table') {
      const t = await tableSinkState(deps.db.pool, x.d.dataset);
      state.set(x.d, t && { rows: t.rows, runId: t.runId, updatedAt: t.updatedAt ? new Date(t.updatedAt) : null });
    }
  }
  return all.map(({ p, d }) => {
    const s = state.get(d) ?? null;
    const max = maxAgeSeconds(p, now);
    const v = evaluateFreshness({ pipeline: p, state: s, maxAgeSeconds: max, now });
    return {
      ...d, pipelineId: p.id, rows: s?.rows ?? null, runId: s?.runId ?? null, updatedAt: s?.updatedAt?.toISOString() ?? null,
      ageSeconds: v.ageSeconds, maxAgeSeconds: max, status: v.status, ...(v.reason ? { reason: v.reason } : {}),
    };
  });
}

function parseMeta(text: string | null): DatasetState | null {
  if (!text) return null;
  try {
    const m = JSON.parse(text) as { runId?: unknown; rows?: unknown; updatedAt?: unknown };
    const at = typeof m.updatedAt === 'string' || typeof m.updatedAt === 'number' ? new Date(m.updatedAt) : null;
    return {
      rows: typeof m.rows === 'number' ? m.rows : null,
      runId: typeof m.runId === 'string' ? m.runId : null,
      updatedAt: at && !Number.isNaN(at.getTime()) ? at : null,
    };
  } catch {
    return null;
  }
}
