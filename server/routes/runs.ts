import { getRunDetail, getStepDetail } from '../../db/read';
import { listStepEvents } from '../../db/step-events';
import { redact } from '../../lib/redact';
import { listRejects } from '../../db/rejects';
import { NotFoundError } from '../../lib/errors';
import type { AppDeps } from '../context';
import { HttpError } from '../errors';
import { route, type RouteGroup } from '../route';
import * as s from '../schemas';
import { jsonBytes, type ReadCache } from '../read-cache';
import { createAudit } from '../audit';
import { sessionLoader } from '../auth';
import { createStreamSlots, streamEvents } from '../sse';

/**
 * Runs: the drilldown, operator actions, and the live event stream (SPEC §6). Three
 * groups, mounted in this order by app.ts (which is also the OpenAPI document's order).
 */

const runNotFound = { description: 'no such run (or step)', schema: s.ErrorResponse };
const badInput = { description: 'invalid body', schema: s.ErrorResponse };
const accepted = { description: 'accepted; the run is queued again', schema: s.Accepted };
const conflict = (why: string) => ({ description: why, schema: s.ErrorResponse });

/** The drilldown: a run, one step, its event log and its rejects (cached reads). */
export function runReadRoutes(deps: AppDeps, cache: ReadCache): RouteGroup {
  const { db } = deps;
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/runs/:runId', tag: 'runs', summary: 'A run with all its steps and their attempts (the drilldown)',
        params: s.RunParams,
        responses: { 200: { description: 'the run', schema: s.RunEnvelope }, 404: runNotFound },
        handler: async (c, { params }) => {
          const body = await cache.get(`run:${params.runId}`, async () => {
            const run = await getRunDetail(db.pool, params.runId);
            return run ? jsonBytes({ run }) : null;
          });
          if (!body) throw new NotFoundError(`run ${params.runId}`);
          return c.body(body, 200, { 'content-type': 'application/json' });
        },
      }),
      route({
        method: 'GET', path: '/runs/:runId/steps/:step', tag: 'runs', summary: 'One step: attempts, timings, rows, error, checkpoint',
        params: s.StepParams,
        responses: { 200: { description: 'the step', schema: s.StepEnvelope }, 404: runNotFound },
        handler: async (c, { params }) => {
          const body = await cache.get(`run:${params.runId}:step:${params.step}`, async () => {
            const step = await getStepDetail(db.pool, params.runId, params.step);
            return step ? jsonBytes({ step }) : null;
          });
          if (!body) throw new NotFoundError(`step ${params.step} of run ${params.runId}`);
          return c.body(body, 200, { 'content-type': 'application/json' });
        },
      }),
      route({
        method: 'GET', path: '/runs/:runId/steps/:step/events', tag: 'runs',
        summary: 'The step\'s event log per attempt (pages, retries, rate limits, data checks, publishes), newest attempt first',
        params: s.StepParams, query: s.StepEventsQuery,
        responses: { 200: { description: 'the event logs', schema: s.StepEvents }, 400: { description: 'invalid query', schema: s.ErrorResponse }, 404: runNotFound },
        handler: async (c, { params, query }) => {
          const attempts = await listStepEvents(db.pool, params.runId, params.step, query.attempt);
          if (!attempts) throw new NotFoundError(`step ${params.step} of run ${params.runId}`);
          // Redacted again on the way out, as step errors are: a secret registered later.
          for (const a of attempts) for (const e of a.events) e.message = redact(e.message);
          return c.json({ attempts });
        },
      }),
      route({
        method: 'GET', path: '/runs/:runId/steps/:step/rejects', tag: 'runs',
        summary: 'Rows the step rejected: the count and up to 100 samples {row, page?, reason, path?, value}',
        params: s.StepParams, query: s.RejectsQuery,
        responses: { 200: { description: 'the rejects', schema: s.RejectList }, 400: { description: 'invalid query', schema: s.ErrorResponse }, 404: runNotFound },
        handler: async (c, { params, query }) => {
          const r = await listRejects(db.pool, params.runId, params.step);
          if (!r) throw new NotFoundError(`step ${params.step} of run ${params.runId}`);
          return c.json({ rowsRejected: r.rowsRejected, rejects: r.rejects.slice(0, query.limit ?? 100) });
        },
      }),
    ],
  };
}

/** A mutation's result, after forgetting what this process cached about the run. */
function invalidatingRun(cache: ReadCache) {
  return async <T>(runId: string, p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } finally {
      cache.invalidateRun(runId);
    }
  };
}

/** Operator actions on runs: retry a step, resume, bulk resume, rerun from a step, cancel. */
export function runActionRoutes(deps: AppDeps, cache: ReadCache): RouteGroup {
  const { engine } = deps;
  const audit = createAudit(deps);
  const changed = invalidatingRun(cache);
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'POST', path: '/runs/:runId/steps/:step/retry', tag: 'actions', summary: 'Retry a failed step; the run then continues',
        params: s.StepParams, body: s.RequeueBody, operator: true,
        responses: {
          202: accepted, 400: badInput, 404: runNotFound,
          409: conflict('the step is not failed (step_not_failed), the run is active (run_active), or a newer run succeeded (superseded; send force)'),
        },
        handler: async (c, { params, body }) => {
          const r = await changed(params.runId, engine.retryStep(params.runId, params.step, { force: body.force }));
          await audit(c, { action: 'run.retry', runId: params.runId, details: { step: params.step, ...(body.force ? { force: true } : {}) } });
          return c.json(r, 202);
        },
      }),
      route({
        method: 'POST', path: '/runs/:runId/resume', tag: 'actions', summary: 'Re-run every step not yet succeeded, reusing succeeded ones',
        params: s.RunParams, body: s.RequeueBody, operator: true,
        responses: {
          202: accepted, 400: badInput, 404: runNotFound,
          409: conflict('the run is active (run_active) or succeeded (run_succeeded), or a newer run succeeded (superseded; send force)'),
        },
        handler: async (c, { params, body }) => {
          const r = await changed(params.runId, engine.resume(params.runId, { force: body.force }));
          await audit(c, { action: 'run.resume', runId: params.runId, ...(body.force ? { details: { force: true } } : {}) });
          return c.json(r, 202);
        },
      }),
      route({
        method: 'POST', path: '/runs/resume', tag: 'actions',
        summary: 'Bulk resume: per pipeline, the newest matching failed/cancelled run that no newer success superseded',
        body: s.BulkResumeBody, operator: true,
        responses: { 200: { description: 'what was resumed and what was skipped, and why', schema: s.BulkResumeResult }, 400: badInput },
        handler: async (c, { body }) => {
          const r = await engine.bulkResume(body);
          for (const runId of r.dryRun ? [] : r.resumed) {
            cache.invalidateRun(runId);
            await audit(c, { action: 'run.resume', runId, details: { bulk: true } });
          }
          return c.json(r, 200);
        },
      }),
      route({
        method: 'POST', path: '/runs/:runId/rerun', tag: 'actions',
        summary: 'Start a new run of the same pipeline from a step, reusing this run\'s checkpoints before it',
        params: s.RunParams, body: s.RerunBody, bodyRequired: true, operator: true,
        responses: {
          202: { description: 'the new run was queued', schema: s.Accepted }, 400: badInput, 404: runNotFound,
          409: conflict('an earlier step has no checkpoint (checkpoint_missing) or the pipeline has an active run (run_active)'),
        },
        handler: async (c, { params, body }) => {
          const r = await changed(params.runId, engine.rerunFrom(params.runId, body.fromStep, body.params, c.get('principal').actor));
          await audit(c, { action: 'run.rerun', runId: r.runId, details: { fromRunId: params.runId, fromStep: body.fromStep } });
          return c.json(r, 202);
        },
      }),
      route({
        method: 'POST', path: '/runs/:runId/cancel', tag: 'actions', summary: 'Stop a queued or running run',
        params: s.RunParams, body: s.NoBody, operator: true,
        responses: { 202: accepted, 400: badInput, 404: runNotFound, 409: conflict('the run already finished (run_finished)') },
        handler: async (c, { params }) => {
          const r = await changed(params.runId, engine.cancel(params.runId));
          await audit(c, { action: 'run.cancel', runId: params.runId });
          return c.json(r, 202);
        },
      }),
    ],
  };
}

/** The live event stream (SSE); a session-authenticated stream ends when its session does. */
export function eventStreamRoutes(deps: AppDeps): RouteGroup {
  const slots = createStreamSlots(deps.sse?.maxStreams ?? 500);
  const sessions = sessionLoader({ redis: deps.redis, operatorRoles: deps.config.operatorRoles });
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/events', tag: 'events', summary: 'Server-Sent Events: run and step status changes',
        query: s.EventsQuery,
        responses: {
          200: { description: 'an event stream; each `message` event is one JSON run or step event', contentType: 'text/event-stream' },
          503: { description: 'live events are not available in this process, or too many streams are open (too_many_streams)', schema: s.ErrorResponse },
        },
        handler: (c) => {
          if (!deps.subscribeEvents) throw new HttpError(503, 'events_unavailable', 'live events are not available');
          const p = c.get('principal');
          const session = p.kind === 'session'
            ? { expiresAt: p.expiresAt, stillValid: async () => (await sessions(p.sessionId)) !== null }
            : undefined;
          return streamEvents(c, deps.subscribeEvents, { ...deps.sse, slots, session });
        },
      }),
    ],
  };
}
