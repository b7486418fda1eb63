import client from 'prom-client';
import { alertCounts } from '../db/alerts';
import { statusCounts } from '../db/read';
import { enabledCursors, schedulerHealth } from '../db/schedule';
import { nextFireTime } from '../lib/cron';
import { listDatasetFreshness } from '../workflows/freshness';
import type { AppDeps } from './context';

/**
 * Gauges read at scrape time, from Postgres (so every api replica reports the same truth)
 * and from the queue. A failed read leaves the gauge as it was and counts a scrape error
 * by source, never fails the scrape.
 */

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'waiting-children', 'prioritized'] as const;

interface GaugeDeps {
  registry: client.Registry;
  scrapeErrors: client.Counter<'source'>;
  db: AppDeps['db'];
}

/** One read shared by the gauges of a scrape: repeated calls within a second reuse it. */
function sharedForASecond<T>(read: () => Promise<T>): () => Promise<T> {
  let cached: { at: number; value: Promise<T> } | null = null;
  return () => {
    if (!cached || Date.now() - cached.at > 1_000) cached = { at: Date.now(), value: read() };
    return cached.value;
  };
}

/** A gauge whose `fill` runs at scrape time; a throw counts a scrape error of `source`. */
function scrapedGauge<L extends string>(
  d: GaugeDeps, source: 'postgres' | 'redis',
  cfg: { name: string; help: string; labelNames?: readonly L[] },
  fill: (g: client.Gauge<L>) => Promise<void>,
): void {
  new client.Gauge<L>({
    // In a node:cluster every process reads the same truth: report one, not the sum.
    aggregator: 'first', ...cfg, registers: [d.registry],
    async collect() {
      try {
        await fill(this);
      } catch {
        d.scrapeErrors.inc({ source });
      }
    },
  });
}

/** Runs and steps by status (both from one query), and BullMQ jobs by state. */
export function registerStateGauges(d: GaugeDeps & { engine: AppDeps['engine'] }): void {
  const counts = sharedForASecond(() => statusCounts(d.db.pool));
  scrapedGauge(d, 'postgres', { name: 'etl_runs', help: 'Runs by pipeline and status', labelNames: ['pipeline', 'status'] }, async (g) => {
    const { runs } = await counts();
    g.reset();
    for (const r of runs) g.set({ pipeline: r.pipelineId, status: r.status }, r.n);
  });
  scrapedGauge(d, 'postgres', { name: 'etl_steps', help: 'Run steps by status', labelNames: ['status'] }, async (g) => {
    const { steps } = await counts();
    g.reset();
    for (const s of steps) g.set({ status: s.status }, s.n);
  });
  scrapedGauge(d, 'redis', { name: 'etl_queue_jobs', help: 'BullMQ jobs of the ETL queue by state', labelNames: ['state'] }, async (g) => {
    const c = await d.engine.queue.getJobCounts(...JOB_STATES);
    for (const s of JOB_STATES) g.set({ state: s }, c[s] ?? 0);
  });
}

/**
 * Scheduler health, from the tick log (BullMQ schedulers have silently stopped in the
 * past; ours is watched from outside the process that runs it). One tick-log query per
 * scrape, shared by these gauges.
 */
export function registerSchedulerGauges(d: GaugeDeps): void {
  const scheduler = sharedForASecond(() => schedulerHealth(d.db.pool));
  scrapedGauge(d, 'postgres', {
    name: 'etl_scheduler_tick_lag_seconds', help: 'Lag from cron tick to run enqueued, last 15 min', labelNames: ['quantile'],
  }, async (g) => {
    const h = await scheduler();
    g.set({ quantile: 'max' }, (h.maxLagMs ?? 0) / 1000);
    g.set({ quantile: '0.99' }, (h.p99LagMs ?? 0) / 1000);
  });
  scrapedGauge(d, 'postgres', { name: 'etl_scheduler_stale_pending_ticks', help: 'Ticks claimed over 30 s ago and not yet handled' }, async (g) => {
    g.set((await scheduler()).stalePending);
  });
  scrapedGauge(d, 'postgres', {
    name: 'etl_scheduler_overdue_pipelines', help: 'Enabled pipelines with a tick due over 60 s ago that no scheduler handled',
  }, async (g) => {
    const now = Date.now();
    const overdue = (await enabledCursors(d.db.pool)).filter((p) => {
      const next = p.cursor ? nextFireTime(p.cron, p.timezone, p.cursor) : null;
      return next !== null && now - next.getTime() > 60_000;
    });
    g.set(overdue.length);
  });
}

/** The alert outbox (SPEC §12): alerts waiting for delivery, given up on, and the age of
 *  the oldest waiting one (a receiver down for long shows here before anyone notices). */
export function registerAlertGauges(d: GaugeDeps): void {
  const counts = sharedForASecond(() => alertCounts(d.db.pool));
  scrapedGauge(d, 'postgres', { name: 'etl_alerts_pending', help: 'Alerts not yet delivered to the webhook (retrying)' }, async (g) => {
    g.set((await counts()).pending);
  });
  scrapedGauge(d, 'postgres', { name: 'etl_alerts_failed', help: 'Alerts given up on after retrying for ALERT_RETRY_FOR_MS' }, async (g) => {
    g.set((await counts()).failed);
  });
  scrapedGauge(d, 'postgres', { name: 'etl_alerts_oldest_pending_seconds', help: 'Age of the oldest undelivered alert' }, async (g) => {
    g.set((await counts()).oldestPendingSeconds);
  });
}

/**
 * Dataset freshness (SPEC §11), evaluated as GET /datasets does (workflows/freshness.ts):
 * age in seconds (-1 for a dataset never published) and 1 when stale or never published.
 */
export function registerDatasetGauges(d: GaugeDeps & { redis: AppDeps['redis'] }): void {
  const datasets = sharedForASecond(() => listDatasetFreshness({ db: d.db, redis: d.redis }));
  scrapedGauge(d, 'postgres', {
    name: 'etl_dataset_age_seconds', help: 'Seconds since the dataset was last published (-1: never)', labelNames: ['dataset'],
  }, async (g) => {
    const list = await datasets();
    g.reset();
    for (const x of list) g.set({ dataset: x.dataset }, x.ageSeconds ?? -1);
  });
  scrapedGauge(d, 'postgres', {
    name: 'etl_dataset_stale', help: '1 when the dataset is older than its maxAgeSeconds or was never published', labelNames: ['dataset'],
  }, async (g) => {
    const list = await datasets();
    g.reset();
    for (const x of list) g.set({ dataset: x.dataset }, x.status === 'fresh' ? 0 : 1);
  });
}
