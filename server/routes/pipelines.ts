import { getPipeline, updatePipeline } from '../../db/pipelines';
import { getPipelineWithLastRun, listPipelinesWithLastRun, listRuns, type PipelineView } from '../../db/read';
import { listTicks } from '../../db/schedule';
import { jsonBytes, type ReadCache } from '../read-cache';
import { nextFireTime, validateCron, validateTimezone } from '../../lib/cron';
import { NotFoundError } from '../../lib/errors';
import type { AppDeps } from '../context';
import { createAudit } from '../audit';
import { BadRequestError } from '../errors';
import { route, type RouteGroup } from '../route';
import * as s from '../schemas';

/**
 * Pipelines: list, one, trigger, enable, schedule, and their runs (SPEC §6). Three groups,
 * mounted in this order by app.ts.
 */

const notFound = { description: 'no such pipeline', schema: s.ErrorResponse };
const badInput = { description: 'invalid body or query', schema: s.ErrorResponse };

// Config is editable in Postgres; an operator may have put a credential in it by mistake.
// `credential` names which credential to resolve (e.g. yespo/OVAGO): a name is shown; a
// credential pasted in its place (an object) is not.
const SECRET_KEY = /pass(word)?|secret|token|api[-_]?key|private[-_]?key|authorization/i;
const CREDENTIAL_KEY = /^credentials?$/i;
function redactConfig(v: unknown, depth = 0): unknown {
  if (depth > 20) return '[redacted]';
  if (Array.isArray(v)) return v.map((x) => redactConfig(x, depth + 1));
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k,
      SECRET_KEY.test(k) || (CREDENTIAL_KEY.test(k) && typeof x !== 'string') ? '[redacted]' : redactConfig(x, depth + 1)]));
  }
  return v;
}

/**
 * Next fire times, remembered until they pass. Computing one (cron-parser, luxon, an Intl
 * zone check) costs about half a millisecond, which made most of GET /pipelines' CPU.
 * Until the remembered time arrives, it is still the first fire time after "now"; an
 * invalid schedule stays invalid.
 */
function nextFireCache(max = 1_000): (cron: string, tz: string) => Date | null {
  const known = new Map<string, { from: number; next: Date | null }>();
  return (cron, tz) => {
    const key = `${cron}\u0000${tz}`;
    const now = Date.now();
    const hit = known.get(key);
    // `from` guards against the clock going back (a fire time between then and now).
    if (hit && (hit.next === null || (hit.from <= now && now < hit.next.getTime()))) return hit.next;
    const next = nextFireTime(cron, tz, new Date(now));
    if (known.size >= max) known.clear();
    known.set(key, { from: now, next });
    return next;
  };
}

/** A pipeline as the API shows it: config redacted, next fire time, sandbox flag, step keys. */
function pipelinePresenter(deps: AppDeps) {
  const nextFire = nextFireCache();
  const present = async (p: PipelineView) => ({
    ...p,
    config: redactConfig(p.config) as Record<string, unknown>,
    nextFireAt: nextFire(p.cron, p.timezone)?.toISOString() ?? null,
    sandbox: (await deps.sandbox?.(p).catch(() => false)) ?? false,
    steps: deps.registry?.get(p.workflow)?.steps.map((x) => x.key) ?? [],
  });
  const load = async (id: string) => {
    const p = await getPipelineWithLastRun(deps.db.pool, id);
    if (!p) throw new NotFoundError(`pipeline ${id}`);
    return present(p);
  };
  return { present, load };
}

/** The pipeline list and one pipeline (cached reads). */
export function pipelineReadRoutes(deps: AppDeps, cache: ReadCache): RouteGroup {
  const { db } = deps;
  const { present, load } = pipelinePresenter(deps);
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/pipelines', tag: 'pipelines', summary: 'List pipelines with schedule, next fire time and last run',
        responses: { 200: { description: 'the pipelines', schema: s.PipelineList } },
        handler: async (c) => {
          const body = await cache.get('pipelines', async () =>
            jsonBytes({ pipelines: await Promise.all((await listPipelinesWithLastRun(db.pool)).map(present)) }));
          return c.body(body!, 200, { 'content-type': 'application/json' });
        },
      }),
      route({
        method: 'GET', path: '/pipelines/:id', tag: 'pipelines', summary: 'One pipeline', params: s.PipelineParams,
        responses: { 200: { description: 'the pipeline', schema: s.PipelineEnvelope }, 404: notFound },
        handler: async (c, { params }) => {
          const body = await cache.get(`pipeline:${params.id}`, async () => jsonBytes({ pipeline: await load(params.id) }));
          return c.body(body!, 200, { 'content-type': 'application/json' });
        },
      }),
    ],
  };
}

/** Operator actions on a pipeline: trigger a run, enable or pause, change the schedule. */
export function pipelineActionRoutes(deps: AppDeps, cache: ReadCache): RouteGroup {
  const { db, engine } = deps;
  const audit = createAudit(deps);
  const { load } = pipelinePresenter(deps);
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'POST', path: '/pipelines/:id/trigger', tag: 'pipelines', summary: 'Start a run now', operator: true,
        params: s.PipelineParams, body: s.TriggerBody,
        responses: {
          202: { description: 'the run was queued', schema: s.Accepted }, 400: badInput, 404: notFound,
          409: { description: 'a run is active and the pipeline does not allow overlap (run_active)', schema: s.ErrorResponse },
        },
        handler: async (c, { params, body }) => {
          const r = await engine.trigger(params.id, { trigger: 'manual', params: body.params ?? {}, actor: c.get('principal').actor });
          cache.invalidatePipeline(params.id);
          await audit(c, { action: 'pipeline.trigger', pipelineId: params.id, runId: r.runId, details: { params: Object.keys(body.params ?? {}) } });
          return c.json(r, 202);
        },
      }),
      route({
        method: 'POST', path: '/pipelines/:id/enable', tag: 'pipelines', summary: 'Enable or disable the schedule', operator: true,
        params: s.PipelineParams, body: s.EnableBody, bodyRequired: true,
        responses: { 200: { description: 'the updated pipeline', schema: s.PipelineEnvelope }, 400: badInput, 404: notFound },
        handler: async (c, { params, body }) => {
          if (!(await updatePipeline(db.pool, params.id, { enabled: body.enabled }))) throw new NotFoundError(`pipeline ${params.id}`);
          cache.invalidatePipeline(params.id);
          engine.events?.pipeline(params.id);
          await audit(c, { action: 'pipeline.enable', pipelineId: params.id, details: { enabled: body.enabled } });
          return c.json({ pipeline: await load(params.id) });
        },
      }),
      route({
        method: 'PUT', path: '/pipelines/:id/cron', tag: 'pipelines', summary: 'Change the schedule', operator: true,
        params: s.PipelineParams, body: s.CronBody, bodyRequired: true,
        responses: {
          200: { description: 'the updated pipeline', schema: s.PipelineEnvelope },
          400: { description: 'invalid_cron, invalid_timezone or invalid_input', schema: s.ErrorResponse }, 404: notFound,
        },
        handler: async (c, { params, body }) => {
          const cron = body.cron.trim();
          const cronError = validateCron(cron);
          if (cronError) throw new BadRequestError('invalid_cron', cronError);
          const tzError = validateTimezone(body.timezone);
          if (tzError) throw new BadRequestError('invalid_timezone', tzError);
          if (!(await updatePipeline(db.pool, params.id, { cron, timezone: body.timezone }))) throw new NotFoundError(`pipeline ${params.id}`);
          cache.invalidatePipeline(params.id);
          engine.events?.pipeline(params.id);
          await audit(c, { action: 'pipeline.cron', pipelineId: params.id, details: { cron, timezone: body.timezone } });
          return c.json({ pipeline: await load(params.id) });
        },
      }),
    ],
  };
}

/** A pipeline's history: its runs (keyset pages) and the scheduler's tick log. */
export function pipelineHistoryRoutes(deps: AppDeps): RouteGroup {
  const { db } = deps;
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/pipelines/:id/runs', tag: 'runs', summary: 'Runs of a pipeline, newest first (keyset pages)',
        params: s.PipelineParams, query: s.RunsQuery,
        responses: { 200: { description: 'one page of runs (without steps)', schema: s.RunsPage }, 400: badInput, 404: notFound },
        handler: async (c, { params, query }) => {
          if (!(await getPipeline(db.pool, params.id))) throw new NotFoundError(`pipeline ${params.id}`);
          return c.json(await listRuns(db.pool, params.id, query));
        },
      }),
      route({
        method: 'GET', path: '/pipelines/:id/ticks', tag: 'pipelines',
        summary: 'The scheduler tick log: every due cron tick and what happened to it (fired, skipped, missed)',
        params: s.PipelineParams, query: s.TicksQuery,
        responses: { 200: { description: 'ticks, newest first', schema: s.TickList }, 400: badInput, 404: notFound },
        handler: async (c, { params, query }) => {
          if (!(await getPipeline(db.pool, params.id))) throw new NotFoundError(`pipeline ${params.id}`);
          const ticks = await listTicks(db.pool, params.id, query.limit ?? 50, query.before ? new Date(query.before) : undefined);
          return c.json({
            ticks: ticks.map((t) => ({ ...t, scheduledFor: t.scheduledFor.toISOString(), recordedAt: t.recordedAt.toISOString() })),
          });
        },
      }),
    ],
  };
}
