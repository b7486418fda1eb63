import type { MiddlewareHandler } from 'hono';
import client from 'prom-client';
import type { Logger } from '../lib/logger';
import type { AppDeps, SubscribeEvents } from './context';
import { trackStepDurations } from './metrics-events';
import { registerAlertGauges, registerDatasetGauges, registerSchedulerGauges, registerStateGauges } from './metrics-gauges';

/**
 * Prometheus metrics of one app instance, on its own registry (never prom-client's global
 * one, so several apps in one process — tests — do not collide). Run and step counts are
 * read from Postgres at scrape time, so every api replica reports the same truth
 * (metrics-gauges.ts); step durations come from the live events this process sees
 * (metrics-events.ts). In a node:cluster those gauges aggregate as `first` (each process
 * reads the same truth); counters and histograms sum.
 */

export interface Metrics {
  registry: client.Registry;
  /** Counts and times every HTTP request by route pattern (never by raw path: ids would explode cardinality). */
  middleware: MiddlewareHandler;
  close(): void;
}

export function createMetrics(o: {
  db: AppDeps['db'];
  /** Where the datasets' `:meta` keys are (dataset freshness gauges); none without it. */
  redis?: AppDeps['redis'];
  engine: AppDeps['engine'];
  log: Logger;
  subscribeEvents?: SubscribeEvents;
}): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const scrapeErrors = new client.Counter({
    name: 'etl_metrics_scrape_errors_total', help: 'Failed reads while collecting metrics', labelNames: ['source'], registers: [registry],
  });
  registerStateGauges({ registry, scrapeErrors, db: o.db, engine: o.engine });
  registerSchedulerGauges({ registry, scrapeErrors, db: o.db });
  registerAlertGauges({ registry, scrapeErrors, db: o.db });
  if (o.redis) registerDatasetGauges({ registry, scrapeErrors, db: o.db, redis: o.redis });
  const unsubscribe = trackStepDurations(registry, o.subscribeEvents);
  return {
    registry,
    middleware: httpMetrics(registry),
    close() {
      unsubscribe?.();
    },
  };
}

function httpMetrics(registry: client.Registry): MiddlewareHandler {
  const requests = new client.Counter({
    name: 'http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry],
  });
  const latency = new client.Histogram({
    name: 'http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry],
  });
  return async function httpMetrics(c, next) {
    const t0 = performance.now();
    await next();
    const route = c.req.routePath || 'unmatched';
    requests.inc({ method: c.req.method, route, status: String(c.res.status) });
    latency.observe({ method: c.req.method, route }, (performance.now() - t0) / 1000);
  };
}
