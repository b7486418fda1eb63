import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { secureHeaders } from 'hono/secure-headers';
import type { Logger } from '../lib/logger';
import { redact } from '../lib/redact';
import { ConflictError, NotFoundError, ValidationError } from '../lib/errors';
import { authenticate, originCheck } from './auth';
import type { AppDeps, AppEnv } from './context';
import { errorBody, HttpError } from './errors';
import { createMetrics } from './metrics';
import { buildOpenApi } from './openapi';
import { mount, route, type RouteGroup } from './route';
import { accessRoutes } from './routes/access';
import { alertRoutes } from './routes/alerts';
import { datasetRoutes } from './routes/datasets';
import { opsRoutes } from './routes/ops';
import { pipelineActionRoutes, pipelineHistoryRoutes, pipelineReadRoutes } from './routes/pipelines';
import { eventStreamRoutes, runActionRoutes, runReadRoutes } from './routes/runs';
import { createReadCache } from './read-cache';
import { mountWebPage } from './static';

/**
 * The HTTP API (SPEC §6, §7). Every /api/etl request passes auth, then the origin check,
 * then the body limit, then its route's zod validation. This file is the one place where
 * errors become HTTP statuses; nothing else builds an error response.
 */

export type { AppDeps } from './context';

export const API_BASE = '/api/etl';
export const MAX_BODY_BYTES = 64 * 1024;

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const metrics = createMetrics({ db: deps.db, redis: deps.redis, engine: deps.engine, log: deps.log, subscribeEvents: deps.subscribeEvents });
  deps.metricsCluster?.register(metrics.registry);

  // `same-origin` (as the page's own meta tag): with hono's default `no-referrer`, a
  // browser sends `Origin: null` on same-origin POSTs and the origin check would refuse
  // them. HSTS belongs to the TLS-terminating proxy, not to a plain-HTTP dev server.
  app.use('*', requestLog(deps.log), metrics.middleware, secureHeaders({ referrerPolicy: 'same-origin', strictTransportSecurity: false }));
  app.use(
    `${API_BASE}/*`,
    authenticate({
      redis: deps.redis, apiToken: deps.config.apiToken, sessionCookie: deps.config.sessionCookie,
      sessionSecret: deps.config.sessionSecret, operatorRoles: deps.config.operatorRoles, ticketPaths: [`${API_BASE}/events`],
    }),
    originCheck({ allowedOrigins: deps.config.allowedOrigins }),
    bodyLimitUnlessRead(bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new HttpError(413, 'payload_too_large', `the body is larger than ${MAX_BODY_BYTES} bytes`);
      },
    })),
  );

  const cache = createReadCache(deps.subscribeEvents);
  const groups: RouteGroup[] = [
    pipelineReadRoutes(deps, cache), pipelineActionRoutes(deps, cache), pipelineHistoryRoutes(deps),
    runReadRoutes(deps, cache), runActionRoutes(deps, cache), eventStreamRoutes(deps),
    datasetRoutes(deps), accessRoutes(deps), alertRoutes(deps), opsRoutes(deps, metrics),
  ];
  let openapi: Record<string, unknown> | undefined;
  groups.push({
    base: API_BASE,
    routes: [route({
      method: 'GET', path: '/openapi.json', tag: 'meta', summary: 'This OpenAPI document',
      responses: { 200: { description: 'OpenAPI 3.1 document', contentType: 'application/json' } },
      handler: (c) => c.json((openapi ??= buildOpenApi(groups, { sessionCookie: deps.config.sessionCookie }))),
    })],
  });
  for (const g of groups) mount(app, g);
  if (deps.webDir) mountWebPage(app, deps.webDir);

  app.notFound((c) => c.json(errorBody('not_found', 'no such route'), 404));
  app.onError((err, c) => {
    if (err instanceof HttpError) return c.json(errorBody(err.code, err.message), err.status);
    if (err instanceof NotFoundError) return c.json(errorBody(err.code, err.message), 404);
    if (err instanceof ConflictError) return c.json(errorBody(err.code, err.message, err.details), 409);
    if (err instanceof ValidationError) return c.json(errorBody(err.code, err.message, err.details), 400);
    // Hono's own client errors (e.g. a malformed request it refused to parse).
    if (err instanceof HTTPException && err.status < 500) {
      return c.json(errorBody('bad_request', 'the request could not be processed'), err.status);
    }
    deps.log.error({
      method: c.req.method, path: c.req.path,
      // Not under `err`: pino's serializer would copy every field of a driver error.
      failure: { type: err.constructor?.name ?? err.name, message: redact(err.message, { max: 2_000 }), stack: redact(err.stack ?? '', { max: 8_000 }) },
    }, 'request failed');
    return c.json(errorBody('internal', 'internal server error'), 500);
  });
  return app;
}

/**
 * GET and HEAD bodies are never read, so they skip the limit: hono's bodyLimit asks the
 * request for its body, which makes @hono/node-server build a full undici Request (and an
 * AbortController) for every read, the most expensive part of serving a cached response.
 */
function bodyLimitUnlessRead(limit: MiddlewareHandler<AppEnv>): MiddlewareHandler<AppEnv> {
  return (c, next) => (c.req.method === 'GET' || c.req.method === 'HEAD' ? next() : limit(c, next));
}

/**
 * One line per request. Only the path is logged, never the query string (it may hold
 * `?token=`) or headers (Authorization, Cookie).
 */
function requestLog(log: Logger): MiddlewareHandler<AppEnv> {
  return async function requestLog(c, next) {
    const t0 = performance.now();
    await next();
    const status = c.res.status;
    const entry = {
      method: c.req.method, path: c.req.path.slice(0, 200), status, ms: Math.round(performance.now() - t0),
      auth: c.get('principal')?.kind,
    };
    // 503 is an expected answer (readiness, session store away), not a fault of ours.
    if (status >= 500 && status !== 503) log.error(entry, 'request');
    else if (status === 503) log.warn(entry, 'request');
    else if (c.req.method !== 'GET' || status >= 400) log.info(entry, 'request');
    else log.debug(entry, 'request');
  };
}
