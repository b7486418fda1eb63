import { sql } from 'drizzle-orm';
import {
  bigserial, boolean, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid,
} from 'drizzle-orm/pg-core';

/** Every table of the platform. Migrations are generated from this file by drizzle-kit. */

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const STEP_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled'] as const;
export const TRIGGERS = ['schedule', 'manual', 'resume', 'rerun'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export type StepStatus = (typeof STEP_STATUSES)[number];
export type Trigger = (typeof TRIGGERS)[number];

/** Who changed state (SPEC §7): a browser session, the API token, the scheduler, or the
 *  platform itself. Never holds a credential, only who it identifies. */
export const ACTOR_KINDS = ['session', 'token', 'schedule', 'system'] as const;
export interface Actor {
  kind: (typeof ACTOR_KINDS)[number];
  id?: string;
  name?: string;
}

export const etlPipelines = pgTable('etl_pipelines', {
  id: text('id').primaryKey(),
  /** Which workflow definition in workflows/index.ts runs this pipeline. */
  workflow: text('workflow').notNull(),
  description: text('description').notNull().default(''),
  cron: text('cron').notNull(),
  timezone: text('timezone').notNull().default('UTC'),
  enabled: boolean('enabled').notNull().default(false),
  config: jsonb('config').notNull().default({}),
  /** 'forbid' (default): a pipeline never has two active runs; 'allow': overlap is fine. */
  concurrency: text('concurrency').notNull().default('forbid'),
  /** After scheduler downtime: 'none' | 'latest' | 'all' (up to catchup_cap ticks). */
  catchup: text('catchup').notNull().default('none'),
  catchupCap: integer('catchup_cap').notNull().default(10),
  /** The scheduler has handled every tick up to and including this instant. */
  scheduleCursor: ts('schedule_cursor'),
  createdAt: ts('created_at').notNull().defaultNow(),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});

export const etlRuns = pgTable('etl_runs', {
  id: uuid('id').primaryKey(),
  pipelineId: text('pipeline_id').notNull().references(() => etlPipelines.id),
  status: text('status').$type<RunStatus>().notNull(),
  trigger: text('trigger').$type<Trigger>().notNull(),
  scheduledFor: ts('scheduled_for'),
  params: jsonb('params').notNull().default({}),
  createdAt: ts('created_at').notNull().defaultNow(),
  startedAt: ts('started_at'),
  finishedAt: ts('finished_at'),
  updatedAt: ts('updated_at').notNull().defaultNow(),
  error: text('error'),
  /** Summary of rows read and published, filled when the run ends. */
  rows: jsonb('rows'),
  parentRunId: uuid('parent_run_id'),
  /** Bumped each time the run's BullMQ flow is rebuilt (resume, retry, reconcile). Jobs of
   *  an older generation are fenced off and do nothing. */
  generation: integer('generation').notNull().default(0),
  /** Set from the pipeline's concurrency policy at creation: exclusive runs may not overlap. */
  exclusive: boolean('exclusive').notNull().default(true),
  /** Who created the run (null for runs older than the audit trail). */
  triggeredBy: jsonb('triggered_by').$type<Actor>(),
}, (t) => [
  uniqueIndex('etl_runs_schedule_tick_uq').on(t.pipelineId, t.scheduledFor).where(sql`${t.trigger} = 'schedule'`),
  uniqueIndex('etl_runs_one_active_uq').on(t.pipelineId).where(sql`${t.exclusive} and ${t.status} in ('queued', 'running')`),
  index('etl_runs_pipeline_created_idx').on(t.pipelineId, t.createdAt.desc(), t.id.desc()),
  index('etl_runs_active_idx').on(t.status).where(sql`${t.status} in ('queued', 'running')`),
]);

export const etlRunSteps = pgTable('etl_run_steps', {
  runId: uuid('run_id').notNull().references(() => etlRuns.id, { onDelete: 'cascade' }),
  key: text('key').notNull(),
  position: integer('position').notNull(),
  status: text('status').$type<StepStatus>().notNull().default('pending'),
  attempts: integer('attempts').notNull().default(0),
  startedAt: ts('started_at'),
  finishedAt: ts('finished_at'),
  rowsIn: integer('rows_in'),
  rowsOut: integer('rows_out'),
  /** Rows this step's validation rejected (SPEC §10), counted over the whole run of the
   *  step, checkpointed pages included; samples are in etl_step_rejects. */
  rowsRejected: integer('rows_rejected'),
  error: text('error'),
  errorStack: text('error_stack'),
  /** In-progress cursor (e.g. Yespo page), saved while the step runs. */
  checkpoint: jsonb('checkpoint'),
  /** The step's result once succeeded: a small value or a reference into etl_blobs. */
  output: jsonb('output'),
  jobId: text('job_id'),
  /** Claimed by the previous step's completion on behalf of its job, which has not yet
   *  taken the claim over (see completeStep in db/steps.ts). */
  handoff: boolean('handoff').notNull().default(false),
  updatedAt: ts('updated_at').notNull().defaultNow(),
}, (t) => [primaryKey({ columns: [t.runId, t.key] })]);

export const etlStepAttempts = pgTable('etl_step_attempts', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  runId: uuid('run_id').notNull().references(() => etlRuns.id, { onDelete: 'cascade' }),
  stepKey: text('step_key').notNull(),
  attempt: integer('attempt').notNull(),
  /** running | succeeded | failed | cancelled | lost (its worker died or the run was rebuilt) | released (handed back at shutdown) */
  status: text('status').notNull(),
  startedAt: ts('started_at').notNull().defaultNow(),
  finishedAt: ts('finished_at'),
  error: text('error'),
  errorStack: text('error_stack'),
  worker: text('worker'),
  /** The attempt's event log (SPEC §14): at most 200 `{at, type, message, data}`, oldest
   *  dropped first; appended in batches with checkpoint saves and the attempt's end. */
  events: jsonb('events').$type<unknown[]>().notNull().default([]),
  /** Events dropped from the front of `events` to keep it at 200. */
  eventsDropped: integer('events_dropped').notNull().default(0),
}, (t) => [uniqueIndex('etl_step_attempts_uq').on(t.runId, t.stepKey, t.attempt)]);

/** Durable chunks of step outputs too large for a jsonb value (staged rows between steps).
 *  Kept for the checkpoint retention period so a resume or rerun can read them. */
export const etlBlobs = pgTable('etl_blobs', {
  runId: uuid('run_id').notNull().references(() => etlRuns.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  seq: integer('seq').notNull(),
  rows: integer('rows').notNull().default(0),
  /** NDJSON, stored as text: it is UTF-8 already, and text skips bytea's hex encoding both
   *  ways (measured: the hex round trip was a large share of a staging pass). */
  data: text('data').notNull(),
  createdAt: ts('created_at').notNull().defaultNow(),
}, (t) => [primaryKey({ columns: [t.runId, t.name, t.seq] })]);

/** Samples of rows a step rejected (SPEC §10): at most 100 per (run, step), the first ones
 *  in source order. `row` is 1-based in its dataset's source order, so (run, step, dataset,
 *  row) is the key and re-validating a page after a crash or a retry adds nothing twice.
 *  `value` is the rejected row as text, redacted and cut to 2 KB. */
export const etlStepRejects = pgTable('etl_step_rejects', {
  runId: uuid('run_id').notNull().references(() => etlRuns.id, { onDelete: 'cascade' }),
  stepKey: text('step_key').notNull(),
  dataset: text('dataset').notNull(),
  row: integer('row').notNull(),
  /** 1-based source page (Yespo), null where the source has no pages. */
  page: integer('page'),
  reason: text('reason').notNull(),
  path: text('path'),
  value: text('value').notNull(),
  createdAt: ts('created_at').notNull().defaultNow(),
}, (t) => [primaryKey({ columns: [t.runId, t.stepKey, t.dataset, t.row] })]);

/** What the last successful run wrote into each Postgres table sink (SPEC §11): the
 *  Redis datasets carry this in their `:meta` key, a table carries it here. Written in the
 *  mirror's transaction, so it never describes rows that were not committed. */
export const etlTableSinks = pgTable('etl_table_sinks', {
  tableName: text('table_name').primaryKey(),
  pipelineId: text('pipeline_id').notNull(),
  runId: uuid('run_id').notNull(),
  rows: integer('rows').notNull(),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});

/** The audit trail (SPEC §7): one row per state change made through the API or by the
 *  scheduler. Append-only; listed newest first by id. */
export const etlAuditLog = pgTable('etl_audit_log', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  at: ts('at').notNull().defaultNow(),
  actor: jsonb('actor').$type<Actor>().notNull(),
  action: text('action').notNull(),
  pipelineId: text('pipeline_id'),
  runId: uuid('run_id'),
  details: jsonb('details'),
}, (t) => [
  index('etl_audit_log_pipeline_idx').on(t.pipelineId, t.id.desc()),
  index('etl_audit_log_run_idx').on(t.runId),
]);

export const TICK_OUTCOMES = ['pending', 'fired', 'skipped_overlap', 'skipped_disabled', 'missed'] as const;
export type TickOutcome = (typeof TICK_OUTCOMES)[number];

/** The tick log: one row per (pipeline, due cron tick). Inserting the row is how a
 *  scheduler replica claims the tick, so each tick is handled exactly once. */
export const etlScheduleTicks = pgTable('etl_schedule_ticks', {
  pipelineId: text('pipeline_id').notNull().references(() => etlPipelines.id, { onDelete: 'cascade' }),
  scheduledFor: ts('scheduled_for').notNull(),
  outcome: text('outcome').$type<TickOutcome>().notNull(),
  runId: uuid('run_id'),
  /** True for a tick fired late by the catch-up policy after scheduler downtime. */
  catchUp: boolean('catch_up').notNull().default(false),
  detail: text('detail'),
  claimedBy: text('claimed_by'),
  recordedAt: ts('recorded_at').notNull().defaultNow(),
  /** Milliseconds from the tick to its run being enqueued. */
  lagMs: integer('lag_ms'),
}, (t) => [
  primaryKey({ columns: [t.pipelineId, t.scheduledFor] }),
  index('etl_schedule_ticks_pending_idx').on(t.recordedAt).where(sql`${t.outcome} = 'pending'`),
]);

/** bq.projects' Postgres sink (SPEC §2): one row per BigQuery project, upserted by
 *  project_id through steps/sinks/postgres-upsert.ts. The first seven columns mirror the
 *  source; created_at / updated_at are the project's own lifecycle times as the source
 *  reports them and source_updated_at is the source row's last-modified time. The last two
 *  are written by the sink only when a run inserts or actually changes the row, so an
 *  unchanged re-run rewrites nothing. */
export const bqProjects = pgTable('bq_projects', {
  projectId: text('project_id').primaryKey(),
  name: text('name').notNull(),
  status: text('status'),
  ownerEmail: text('owner_email'),
  budgetUsd: doublePrecision('budget_usd'),
  createdAt: ts('created_at'),
  updatedAt: ts('updated_at'),
  sourceUpdatedAt: ts('source_updated_at'),
  lastRunId: uuid('last_run_id'),
  syncedAt: ts('synced_at').notNull().defaultNow(),
});

export const ALERT_TYPES = ['run.failed', 'run.recovered', 'dataset.stale', 'dataset.fresh', 'schedule.overdue', 'test'] as const;
export type AlertType = (typeof ALERT_TYPES)[number];
export const ALERT_DELIVERY_STATES = ['pending', 'delivered', 'failed', 'skipped'] as const;
export type AlertDeliveryState = (typeof ALERT_DELIVERY_STATES)[number];

/** The alert outbox (SPEC §12): one row per event, inserted in the same statement or
 *  transaction as the state change that causes it, then delivered by the worker's sender
 *  (worker/alerts-sender.ts). A sender owns a row while `lease_until` is in the future. */
export const etlAlerts = pgTable('etl_alerts', {
  /** Also the webhook's `id` and `X-ETL-Event-Id`: the same on every redelivery. */
  id: uuid('id').primaryKey(),
  type: text('type').$type<AlertType>().notNull(),
  occurredAt: ts('occurred_at').notNull().defaultNow(),
  pipelineId: text('pipeline_id'),
  runId: uuid('run_id'),
  dataset: text('dataset'),
  /** Short, secret-free description (a run's error is redacted before it is stored). */
  summary: text('summary').notNull(),
  details: jsonb('details'),
  state: text('state').$type<AlertDeliveryState>().notNull().default('pending'),
  attempts: integer('attempts').notNull().default(0),
  nextAttemptAt: ts('next_attempt_at').notNull().defaultNow(),
  leaseUntil: ts('lease_until'),
  claimedBy: text('claimed_by'),
  lastError: text('last_error'),
  lastStatus: integer('last_status'),
  deliveredAt: ts('delivered_at'),
}, (t) => [
  index('etl_alerts_due_idx').on(t.nextAttemptAt).where(sql`${t.state} = 'pending'`),
  index('etl_alerts_occurred_idx').on(t.occurredAt.desc()),
]);

/** What the last alert of a subject said, so paired alerts fire once per change:
 *  `run:<pipeline>` ok|failing, `dataset:<dataset>` fresh|stale, `schedule:<pipeline>` ok|overdue. */
export const etlAlertState = pgTable('etl_alert_state', {
  subject: text('subject').primaryKey(),
  state: text('state').notNull(),
  since: ts('since').notNull().defaultNow(),
  /** How many failures (or breaches) in the current streak. */
  count: integer('count').notNull().default(1),
  ref: text('ref'),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});
