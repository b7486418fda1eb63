import type { MiddlewareHandler } from 'hono';
import client from 'prom-client';
import { statusCounts } from '../db/read';
import { enabledCursors, schedulerHealth } from '../db/schedule';
import { nextFireTime } from '../lib/cron';
import type { Logger } from '../lib/logger';
import type { AppDeps, SubscribeEvents } from './context';

/**
 * Prometheus metrics of one app instance, on its own registry (never prom-client's global
 * one, so several apps in one process — tests — do not collide). Run and step counts are
 * read from Postgres at scrape time, so every api replica reports the same truth; step
 * durations come from the live events this process sees. In a node:cluster those gauges
 * aggregate as `first` (each process reads the same truth); counters and histograms sum.
 */

export interface Metrics {
  registry: client.Registry;
  /** Counts and times every HTTP request by route pattern (never by raw path: ids would explode cardinality). */
  middleware: MiddlewareHandler;
  close(): void;
}

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'waiting-children', 'prioritized'] as const;

export function createMetrics(o: {
  db: AppDeps['db'];
  engine: AppDeps['engine'];
  log: Logger;
  subscribeEvents?: SubscribeEvents;
}): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const scrapeErrors = new client.Counter({
    name: 'etl_metrics_scrape_errors_total', help: 'Failed reads while collecting metrics', labelNames: ['source'], registers: [registry],
  });

  // Both gauges are filled from one query, shared for a second.
  let cached: { at: number; value: ReturnType<typeof statusCounts> } | null = null;
  const counts = () => {
    if (!cached || Date.now() - cached.at > 1_000) cached = { at: Date.now(), value: statusCounts(o.db.pool) };
    return cached.value;
  };

  new client.Gauge({
    aggregator: 'first', name: 'etl_runs', help: 'Runs by pipeline and status', labelNames: ['pipeline', 'status'], registers: [registry],
    async collect() {
      try {
        const { runs } = await counts();
        this.reset();
        for (const r of runs) this.set({ pipeline: r.pipelineId, status: r.status }, r.n);
      } catch {
        scrapeErrors.inc({ source: 'postgres' });
      }
    },
  });
  new client.Gauge({
    aggregator: 'first', name: 'etl_steps', help: 'Run steps by status', labelNames: ['status'], registers: [registry],
    async collect() {
      try {
        const { steps } = await counts();
        this.reset();
        for (const s of steps) this.set({ status: s.status }, s.n);
      } catch {
        scrapeErrors.inc({ source: 'postgres' });
      }
    },
  });
  new client.Gauge({
    aggregator: 'first', name: 'etl_queue_jobs', help: 'BullMQ jobs of the ETL queue by state', labelNames: ['state'], registers: [registry],
    async collect() {
      try {
        const c = await o.engine.queue.getJobCounts(...JOB_STATES);
        for (const s of JOB_STATES) this.set({ state: s }, c[s] ?? 0);
      } catch {
        scrapeErrors.inc({ source: 'redis' });
      }
    },
  });

  // One tick-log query per scrape, shared by the scheduler gauges (like `counts` above).
  let health: { at: number; value: ReturnType<typeof schedulerHealth> } | null = null;
  const scheduler = () => {
    if (!health || Date.now() - health.at > 1_000) health = { at: Date.now(), value: schedulerHealth(o.db.pool) };
    return health.value;
  };

  // Scheduler health, from the tick log (BullMQ schedulers have silently stopped in the
  // past; ours is watched from outside the process that runs it).
  new client.Gauge({
    aggregator: 'first', name: 'etl_scheduler_tick_lag_seconds', help: 'Lag from cron tick to run enqueued, last 15 min', labelNames: ['quantile'], registers: [registry],
    async collect() {
      try {
        const h = await scheduler();
        this.set({ quantile: 'max' }, (h.maxLagMs ?? 0) / 1000);
        this.set({ quantile: '0.99' }, (h.p99LagMs ?? 0) / 1000);
      } catch {
        scrapeErrors.inc({ source: 'postgres' });
      }
    },
  });
  new client.Gauge({
    aggregator: 'first', name: 'etl_scheduler_stale_pending_ticks', help: 'Ticks claimed over 30 s ago and not yet handled', registers: [registry],
    async collect() {
      try {
        this.set((await scheduler()).stalePending);
      } catch {
        scrapeErrors.inc({ source: 'postgres' });
      }
    },
  });
  new client.Gauge({
    aggregator: 'first', name: 'etl_scheduler_overdue_pipelines', help: 'Enabled pipelines with a tick due over 60 s ago that no scheduler handled', registers: [registry],
    async collect() {
      try {
        const now = Date.now();
        const overdue = (await enabledCursors(o.db.pool)).filter((p) => {
          const next = p.cursor ? nextFireTime(p.cron, p.timezone, p.cursor) : null;
          return next !== null && now - next.getTime() > 60_000;
        });
        this.set(overdue.length);
      } catch {
        scrapeErrors.inc({ source: 'postgres' });
      }
    },
  });

  // Every api process sees every event (Redis pub/sub), so in a cluster one process's histogram is the whole truth.
  const stepDuration = new client.Histogram({
    aggregator: 'first', name: 'etl_step_duration_seconds', help: 'Duration of step attempts seen by this process', labelNames: ['pipeline', 'step', 'outcome'],
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600], registers: [registry],
  });
  const started = new Map<string, number>();
  const unsubscribe = o.subscribeEvents?.((data) => {
    const e = JSON.parse(data) as { type: string; runId: string; pipelineId: string; step?: string; status: string; attempt?: number; at?: string };
    if (e.type === 'run' && (e.status === 'cancelled' || e.status === 'failed')) {
      // A cancelled attempt never reports its end: forget the run's open attempts.
      for (const k of started.keys()) if (k.startsWith(`${e.runId}|`)) started.delete(k);
      return;
    }
    if (e.type !== 'step' || !e.step || e.attempt === undefined || !e.at) return;
    const key = `${e.runId}|${e.step}|${e.attempt}`;
    const at = Date.parse(e.at);
    if (e.status === 'running') {
      // A checkpoint save repeats 'running' for the same attempt: keep the first.
      if (!started.has(key)) started.set(key, at);
      // Attempts whose end this process never sees must not accumulate.
      if (started.size > 10_000) started.delete(started.keys().next().value!);
      return;
    }
    const t0 = started.get(key);
    if (t0 === undefined) return;
    started.delete(key);
    const outcome = e.status === 'succeeded' ? 'succeeded' : 'failed';
    stepDuration.observe({ pipeline: e.pipelineId, step: e.step, outcome }, Math.max(0, (at - t0) / 1000));
  });

  const requests = new client.Counter({
    name: 'http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry],
  });
  const latency = new client.Histogram({
    name: 'http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry],
  });

  return {
    registry,
    middleware: async function httpMetrics(c, next) {
      const t0 = performance.now();
      await next();
      const route = c.req.routePath || 'unmatched';
      requests.inc({ method: c.req.method, route, status: String(c.res.status) });
      latency.observe({ method: c.req.method, route }, (performance.now() - t0) / 1000);
    },
    close() {
      unsubscribe?.();
    },
  };
}
