import { ping } from '../../db/read';
import { workersSeen } from '../../lib/worker-presence';
import { tokenMatches } from '../auth';
import type { AppDeps } from '../context';
import { HttpError } from '../errors';
import type { Metrics } from '../metrics';
import { route, type RouteGroup } from '../route';
import * as s from '../schemas';

/** Public probes and the Prometheus scrape (SPEC §7: /metrics is not proxied by `web`). */

const PROBE_TIMEOUT_MS = 1_500;

/** Resolves true when `p` settles successfully within the timeout. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function withinValue<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let value: T | null = null;
  return (await within(p.then((v) => (value = v)), ms)) ? value : null;
}

export function opsRoutes(deps: AppDeps, metrics: Metrics): RouteGroup {
  return {
    base: '',
    routes: [
      route({
        method: 'GET', path: '/healthz', tag: 'ops', summary: 'Liveness: the process answers', auth: false,
        responses: { 200: { description: 'alive', schema: s.Health } },
        handler: (c) => c.json({ ok: true, pid: process.pid }),
      }),
      route({
        method: 'GET', path: '/readyz', tag: 'ops', summary: 'Readiness: Postgres and Redis answer', auth: false,
        responses: { 200: { description: 'ready', schema: s.Ready }, 503: { description: 'a dependency is down', schema: s.Ready } },
        handler: async (c) => {
          const [pg, redis] = await Promise.all([within(ping(deps.db.pool), PROBE_TIMEOUT_MS), within(deps.redis.ping(), PROBE_TIMEOUT_MS)]);
          const checks = { postgres: pg ? 'ok' : 'down', redis: redis ? 'ok' : 'down' } as const;
          const workers = redis ? await withinValue(workersSeen(deps.redis, deps.engine.queue.name), PROBE_TIMEOUT_MS) : null;
          return c.json({ ok: pg && redis, checks, workers }, pg && redis ? 200 : 503);
        },
      }),
      route({
        method: 'GET', path: '/api/etl/workers', tag: 'ops', summary: 'Workers seen by their heartbeat (the page warns when none is alive)',
        responses: { 200: { description: 'workers', schema: s.Workers } },
        handler: async (c) => c.json(await workersSeen(deps.redis, deps.engine.queue.name)),
      }),
      route({
        method: 'GET', path: '/metrics', tag: 'ops', summary: 'Prometheus metrics (bearer METRICS_TOKEN when it is set)', auth: false,
        responses: {
          200: { description: 'Prometheus text format', contentType: 'text/plain; version=0.0.4' },
          401: { description: 'METRICS_TOKEN is set and the request does not carry it', schema: s.ErrorResponse },
        },
        handler: async (c) => {
          const want = deps.config.metricsToken;
          if (want) {
            const m = /^Bearer[ \t]+(\S{1,512})[ \t]*$/i.exec(c.req.header('authorization') ?? '');
            if (!m || !tokenMatches(m[1], want)) throw new HttpError(401, 'unauthorized', 'the metrics token is required');
          }
          return c.body(
            await (deps.metricsCluster ? deps.metricsCluster.metrics() : metrics.registry.metrics()), 200, { 'Content-Type': metrics.registry.contentType },
          );
        },
      }),
    ],
  };
}
