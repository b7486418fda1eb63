import { z } from 'zod';
import { decodeCursor } from '../db/read';
import { decodeAuditCursor } from '../db/audit';
import { ACTOR_KINDS, RUN_STATUSES, STEP_STATUSES, TRIGGERS } from '../db/schema';

/**
 * Every input and output of the HTTP API as zod schemas: the routes validate with them
 * and openapi.ts documents them, so the two cannot drift apart.
 */

// ---- path parameters (a value that fails these names nothing: 404) ----
export const PipelineId = z.string().regex(/^[A-Za-z0-9._-]{1,100}$/).describe('pipeline id, e.g. yespo.OVAGO');
export const RunId = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i).describe('run id (UUID)');
export const StepKey = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/).describe('step key, e.g. transform');

export const PipelineParams = z.strictObject({ id: PipelineId });
export const RunParams = z.strictObject({ runId: RunId });
export const StepParams = z.strictObject({ runId: RunId, step: StepKey });

// ---- query strings ----
/**
 * A time both JavaScript and Postgres accept. Date.parse takes years up to ±275760
 * (`-100000-01-01T00:00:00Z`), where timestamptz errors: such a value must be a 400.
 */
const MIN_TIME = Date.parse('0001-01-01T00:00:00Z');
const MAX_TIME = Date.parse('9999-12-31T23:59:59.999Z');
export function isPgTime(v: string): boolean {
  const t = Date.parse(v);
  return !Number.isNaN(t) && t >= MIN_TIME && t <= MAX_TIME;
}

export const NoQuery = z.strictObject({});
export const RunsQuery = z.strictObject({
  limit: z.string().regex(/^\d{1,3}$/, 'limit must be an integer from 1 to 100')
    .transform(Number).pipe(z.number().int().min(1).max(100)).optional().describe('1..100, default 20'),
  cursor: z.string().max(200).refine((c) => decodeCursor(c) !== null, 'cursor is not one this API returned').optional()
    .describe('nextCursor of the previous page'),
  status: z.enum(RUN_STATUSES).optional(),
});
export const TicksQuery = z.strictObject({
  limit: z.string().regex(/^\d{1,3}$/, 'limit must be an integer from 1 to 500')
    .transform(Number).pipe(z.number().int().min(1).max(500)).optional().describe('1..500, default 50'),
  before: z.string().max(40).refine(isPgTime, 'before must be an ISO timestamp between years 0001 and 9999').optional()
    .describe('only ticks scheduled before this instant'),
});
export const TickList = z.object({
  ticks: z.array(z.object({
    scheduledFor: z.string(), outcome: z.enum(['pending', 'fired', 'skipped_overlap', 'skipped_disabled', 'missed']),
    runId: z.string().nullable(), catchUp: z.boolean(), detail: z.string().nullable(), recordedAt: z.string(), lagMs: z.number().nullable(),
  })),
});
export const StepEventsQuery = z.strictObject({
  attempt: z.string().regex(/^\d{1,6}$/, 'attempt must be an integer from 1 to 999999')
    .transform(Number).pipe(z.number().int().min(1)).optional().describe('one attempt (default: every attempt, newest first)'),
});
export const AuditQuery = z.strictObject({
  limit: z.string().regex(/^\d{1,3}$/, 'limit must be an integer from 1 to 200')
    .transform(Number).pipe(z.number().int().min(1).max(200)).optional().describe('1..200, default 50'),
  cursor: z.string().max(64).refine((c) => decodeAuditCursor(c) !== null, 'cursor is not one this API returned').optional()
    .describe('nextCursor of the previous page'),
});
export const RejectsQuery = z.strictObject({
  limit: z.string().regex(/^\d{1,3}$/, 'limit must be an integer from 1 to 100')
    .transform(Number).pipe(z.number().int().min(1).max(100)).optional().describe('1..100, default 100'),
});
export const DatasetsQuery = z.strictObject({
  pipelineId: PipelineId.optional().describe('only this pipeline\'s datasets'),
  status: z.enum(['fresh', 'stale', 'never']).optional(),
});
export const EventsQuery = z.strictObject({
  ticket: z.string().max(64).optional()
    .describe('a one-time ticket from POST /events/ticket, for clients that cannot send the cookie or a header'),
});

// ---- bodies ----
/**
 * Run params end up in a jsonb column: Postgres rejects \u0000 and lone surrogates, and
 * deep nesting costs stack; all of those must be a 400 here, not a 500 there.
 */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
function jsonProblem(v: unknown, depth: number): string | null {
  if (depth > 8) return 'params are nested too deeply (max 8 levels)';
  if (typeof v === 'string') return v.includes('\u0000') || LONE_SURROGATE.test(v) ? 'params contain an invalid character' : null;
  if (Array.isArray(v)) {
    for (const x of v) { const p = jsonProblem(x, depth + 1); if (p) return p; }
    return null;
  }
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const p = jsonProblem(k, depth) ?? jsonProblem(x, depth + 1);
      if (p) return p;
    }
  }
  return null;
}
export const RunParamsBody = z.record(z.string().min(1).max(100), z.unknown())
  .refine((v) => Object.keys(v).length <= 100, 'at most 100 params')
  .superRefine((v, ctx) => {
    const p = jsonProblem(v, 1);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  })
  .describe('free-form params passed to the run (JSON object)');

export const NoBody = z.strictObject({});
export const TriggerBody = z.strictObject({ params: RunParamsBody.optional() });
export const EnableBody = z.strictObject({ enabled: z.boolean() });
export const CronBody = z.strictObject({
  cron: z.string().min(1).max(120).describe('5 fields: minute hour day-of-month month day-of-week (no seconds field)'),
  timezone: z.string().min(1).max(64).describe('IANA zone, e.g. Europe/Kyiv'),
});
export const RerunBody = z.strictObject({ fromStep: StepKey, params: RunParamsBody.optional() });
export const RequeueBody = z.strictObject({
  force: z.boolean().optional().describe('resume or retry even though a newer run of the pipeline succeeded (otherwise 409 superseded)'),
});
// Passed on as the instant JavaScript read, never as the raw text: Date.parse accepts
// spellings Postgres refuses (`2024-02-30`, a `+9999` offset), which must not become a 500.
const BulkTime = z.string().max(40).refine(isPgTime, 'must be an ISO timestamp between years 0001 and 9999')
  .transform((v) => new Date(v).toISOString());
export const BulkResumeBody = z.strictObject({
  pipelineId: PipelineId.optional().describe('only this pipeline (default: every pipeline)'),
  status: z.array(z.enum(['failed', 'cancelled'])).min(1).max(2).optional().describe('run statuses to resume (default ["failed"])'),
  since: BulkTime.optional().describe('only runs created at or after this instant'),
  until: BulkTime.optional().describe('only runs created before this instant'),
  dryRun: z.boolean().optional().describe('answer what would be resumed, changing nothing'),
});

// ---- responses ----
/** Named response schemas: openapi.ts emits them as components and refers to them. */
export const components = z.registry<{ id: string }>();

const Time = z.string().describe('ISO 8601 UTC');
const TimeOrNull = Time.nullable();

export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
}).register(components, { id: 'Error' });

export const Attempt = z.object({
  attempt: z.number().int(), status: z.string(), startedAt: TimeOrNull, finishedAt: TimeOrNull, error: z.string().nullable(),
}).register(components, { id: 'Attempt' });

export const Step = z.object({
  key: z.string(), position: z.number().int(), status: z.enum(STEP_STATUSES), attempts: z.number().int(),
  startedAt: TimeOrNull, finishedAt: TimeOrNull, rowsIn: z.number().int().nullable(), rowsOut: z.number().int().nullable(),
  rowsRejected: z.number().int().describe('rows this step rejected under the pipeline\'s badRows policy (0 where it validates nothing)'),
  error: z.string().nullable(), checkpoint: z.unknown(), attemptsHistory: z.array(Attempt),
}).register(components, { id: 'Step' });

export const StepDetail = Step.extend({
  errorStack: z.string().nullable(), output: z.unknown(), jobId: z.string().nullable(),
}).register(components, { id: 'StepDetail' });

export const Actor = z.object({
  kind: z.enum(ACTOR_KINDS), id: z.string().optional(), name: z.string().optional(),
}).describe('who changed state: a session user, the API token, the scheduler or the platform').register(components, { id: 'Actor' });

export const Run = z.object({
  id: z.string(), pipelineId: z.string(), status: z.enum(RUN_STATUSES), trigger: z.enum(TRIGGERS),
  createdAt: Time, startedAt: TimeOrNull, finishedAt: TimeOrNull, error: z.string().nullable(),
  parentRunId: z.string().nullable(), scheduledFor: TimeOrNull, params: z.record(z.string(), z.unknown()),
  rows: z.object({ in: z.number().nullable().optional(), out: z.number().nullable().optional() }).nullable(),
  triggeredBy: Actor.nullable().describe('who started the run (null for runs older than the audit trail)'),
}).register(components, { id: 'Run' });

export const RunDetail = Run.extend({ steps: z.array(Step) }).register(components, { id: 'RunDetail' });

export const Pipeline = z.object({
  id: z.string(), description: z.string(), workflow: z.string(), cron: z.string(), timezone: z.string(), enabled: z.boolean(),
  concurrency: z.string(), catchup: z.string(), catchupCap: z.number().int(), config: z.record(z.string(), z.unknown()),
  nextFireAt: TimeOrNull.describe('next tick of the schedule, whether or not the pipeline is enabled'),
  sandbox: z.boolean(), steps: z.array(z.string()).describe('step keys of its workflow'),
  lastRun: Run.nullable(), createdAt: Time, updatedAt: Time,
}).register(components, { id: 'Pipeline' });

export const PipelineList = z.object({ pipelines: z.array(Pipeline) });
export const PipelineEnvelope = z.object({ pipeline: Pipeline });
export const RunsPage = z.object({ runs: z.array(Run), nextCursor: z.string().nullable() });
export const RunEnvelope = z.object({ run: RunDetail });
export const StepEnvelope = z.object({ step: StepDetail });
export const Accepted = z.object({ runId: z.string() });
export const StepEvent = z.object({
  at: Time, type: z.string().describe('page | retry | rate_limited | staged | check | published (more may come)'),
  message: z.string(), data: z.record(z.string(), z.unknown()).optional(),
}).register(components, { id: 'StepEvent' });
export const StepEvents = z.object({
  attempts: z.array(z.object({
    attempt: z.number().int(), status: z.string(), startedAt: Time, finishedAt: TimeOrNull,
    dropped: z.number().int().describe('older events dropped to keep the newest 200'),
    events: z.array(StepEvent).describe('oldest first'),
  })).describe('newest attempt first'),
});
export const BulkResumeResult = z.object({
  matched: z.number().int().describe('runs matching the filter'),
  resumed: z.array(z.string()).describe('runs resumed (with dryRun: that would be resumed), at most one per pipeline'),
  skipped: z.array(z.object({
    runId: z.string(), pipelineId: z.string(),
    reason: z.string().describe('not_newest | superseded | run_active, or the error code of a resume that failed'),
    supersededBy: z.string().optional(),
  })),
  dryRun: z.boolean(),
}).register(components, { id: 'BulkResumeResult' });
export const Health = z.object({ ok: z.boolean(), pid: z.number().int().describe('the answering process (one of several with API_WORKERS)') });
export const Workers = z.object({
  alive: z.number().int().describe('workers with a healthy heartbeat in the last minute'),
  ids: z.array(z.string()),
  lastSeenAt: Time.nullable().describe('the newest healthy heartbeat of any worker'),
}).register(components, { id: 'Workers' });
export const Ready = z.object({
  ok: z.boolean(), checks: z.object({ postgres: z.enum(['ok', 'down']), redis: z.enum(['ok', 'down']) }),
  workers: Workers.nullable().describe('reported, not required: the api is ready without workers (runs queue)'),
});

export const Reject = z.object({
  dataset: z.string(), row: z.number().int().describe('1-based position in the dataset\'s source order'),
  page: z.number().int().optional().describe('1-based source page (Yespo)'), reason: z.string(),
  path: z.string().optional().describe('the field that failed, dotted'), value: z.string().describe('the row as sent, redacted, cut to 2 KB'),
}).register(components, { id: 'Reject' });
export const RejectList = z.object({
  rowsRejected: z.number().int(), rejects: z.array(Reject).describe('up to 100 samples, in source order'),
});
export const Dataset = z.object({
  dataset: z.string(), key: z.string().describe('Redis key, or the Postgres table'), kind: z.enum(['hash', 'string', 'table']),
  pipelineId: z.string(), rows: z.number().int().nullable(), runId: z.string().nullable(), updatedAt: TimeOrNull,
  ageSeconds: z.number().int().nullable(), maxAgeSeconds: z.number().int(), status: z.enum(['fresh', 'stale', 'never']),
  reason: z.string().optional().describe('why it is stale or never published'),
}).register(components, { id: 'Dataset' });
export const DatasetList = z.object({ datasets: z.array(Dataset) });

export const AuditEntry = z.object({
  id: z.number().int(), at: Time, actor: Actor, action: z.string(), pipelineId: z.string().nullable(), runId: z.string().nullable(),
  details: z.record(z.string(), z.unknown()).nullable(),
}).register(components, { id: 'AuditEntry' });
export const AuditPage = z.object({ entries: z.array(AuditEntry), nextCursor: z.string().nullable() });
export const Me = z.object({
  actor: Actor, operator: z.boolean().describe('whether this caller may change state'),
  operatorRoles: z.array(z.string()).describe('session roles that may change state (ETL_OPERATOR_ROLES)'),
});
export const Ticket = z.object({ ticket: z.string(), expiresInSeconds: z.number().int() });
