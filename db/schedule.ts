import type pg from 'pg';
import type { TickOutcome } from './schema';

type Q = Pick<pg.Pool, 'query'>;

/** The scheduler's SQL: tick claims are inserts into the tick log, so a primary-key
 *  conflict is how a replica learns another one already has the tick. */

export interface ScheduleRow {
  id: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  catchup: 'none' | 'latest' | 'all';
  catchupCap: number;
  cursor: Date | null;
  updatedAt: Date;
}

export async function loadSchedules(q: Q): Promise<ScheduleRow[]> {
  const { rows } = await q.query<ScheduleRow>({
    name: 'etl-load-schedules',
    text: `select id, cron, timezone, enabled, catchup, catchup_cap as "catchupCap", schedule_cursor as cursor,
             updated_at as "updatedAt" from etl_pipelines`,
  });
  return rows;
}

/** A pipeline the scheduler has never seen starts from now: no backfill of its history. */
export async function initCursors(q: Q, ids: string[], at: Date): Promise<void> {
  if (ids.length === 0) return;
  await q.query('update etl_pipelines set schedule_cursor = $2 where id = any($1::text[]) and schedule_cursor is null', [ids, at]);
}

export async function advanceCursors(q: Q, moves: { id: string; to: Date }[]): Promise<void> {
  if (moves.length === 0) return;
  await q.query(
    `update etl_pipelines p set schedule_cursor = v.to_at
     from unnest($1::text[], $2::timestamptz[]) as v(id, to_at)
     where p.id = v.id and (p.schedule_cursor is null or p.schedule_cursor < v.to_at)`,
    [moves.map((m) => m.id), moves.map((m) => m.to)],
  );
}

export interface TickClaim {
  pipelineId: string;
  scheduledFor: Date;
  outcome: TickOutcome;
  catchUp: boolean;
  detail?: string | null;
}

/** A tick as etl_schedule_ticks stores it (the columns claimTicks and stalePendingTicks read). */
interface TickDbRow { pipeline_id: string; scheduled_for: Date; outcome: TickOutcome; catch_up: boolean; detail: string | null }

/** Inserts tick rows; returns only those this caller inserted (the ones it now owns). */
export async function claimTicks(q: Q, ticks: TickClaim[], worker: string): Promise<TickClaim[]> {
  if (ticks.length === 0) return [];
  const { rows } = await q.query<TickDbRow>(
    `insert into etl_schedule_ticks (pipeline_id, scheduled_for, outcome, catch_up, detail, claimed_by)
     select * , $6::text from unnest($1::text[], $2::timestamptz[], $3::text[], $4::boolean[], $5::text[])
     on conflict do nothing
     returning pipeline_id, scheduled_for, outcome, catch_up, detail`,
    [ticks.map((t) => t.pipelineId), ticks.map((t) => t.scheduledFor), ticks.map((t) => t.outcome),
      ticks.map((t) => t.catchUp), ticks.map((t) => t.detail ?? null), worker],
  );
  return rows.map((r) => ({ pipelineId: r.pipeline_id, scheduledFor: r.scheduled_for, outcome: r.outcome, catchUp: r.catch_up, detail: r.detail }));
}

export async function resolveTick(q: Q, a: {
  pipelineId: string; scheduledFor: Date; outcome: TickOutcome; runId?: string | null; detail?: string | null; lagMs?: number | null;
}): Promise<void> {
  await q.query({
    name: 'etl-resolve-tick',
    text: `update etl_schedule_ticks set outcome = $3, run_id = $4, detail = coalesce($5, detail), lag_ms = $6, recorded_at = now()
           where pipeline_id = $1 and scheduled_for = $2 and outcome = 'pending'`,
    values: [a.pipelineId, a.scheduledFor, a.outcome, a.runId ?? null, a.detail ?? null, a.lagMs ?? null],
  });
}

/** Claimed ticks nobody resolved (the claimer died, or a catch-up tick waits its turn):
 *  the oldest per pipeline, older than `olderThanMs`. */
export async function stalePendingTicks(q: Q, olderThanMs: number, limit = 500): Promise<(TickClaim & { ageMs: number })[]> {
  const { rows } = await q.query<Omit<TickDbRow, 'outcome'> & { age_ms: number }>(
    `select distinct on (pipeline_id) pipeline_id, scheduled_for, catch_up, detail,
       (extract(epoch from now() - recorded_at) * 1000)::int as age_ms
     from etl_schedule_ticks
     where outcome = 'pending' and recorded_at < now() - make_interval(secs => $1::float8 / 1000)
     order by pipeline_id, scheduled_for limit $2`,
    [olderThanMs, limit],
  );
  return rows.map((r) => ({ pipelineId: r.pipeline_id, scheduledFor: r.scheduled_for, outcome: 'pending', catchUp: r.catch_up, detail: r.detail, ageMs: r.age_ms }));
}

export async function scheduledRunId(q: Q, pipelineId: string, scheduledFor: Date): Promise<string | null> {
  const { rows } = await q.query<{ id: string }>(
    `select id from etl_runs where pipeline_id = $1 and scheduled_for = $2 and trigger = 'schedule'`, [pipelineId, scheduledFor]);
  return rows[0]?.id ?? null;
}

export interface TickRow {
  pipelineId: string;
  scheduledFor: Date;
  outcome: TickOutcome;
  runId: string | null;
  catchUp: boolean;
  detail: string | null;
  recordedAt: Date;
  lagMs: number | null;
}

/** The tick log of one pipeline, newest first: "why did this not run at 03:00?" */
export async function listTicks(q: Q, pipelineId: string, limit = 50, before?: Date): Promise<TickRow[]> {
  const { rows } = await q.query<TickRow>(
    `select pipeline_id as "pipelineId", scheduled_for as "scheduledFor", outcome, run_id as "runId", catch_up as "catchUp",
       detail, recorded_at as "recordedAt", lag_ms as "lagMs"
     from etl_schedule_ticks where pipeline_id = $1 and ($3::timestamptz is null or scheduled_for < $3)
     order by scheduled_for desc limit $2`,
    [pipelineId, limit, before ?? null],
  );
  return rows;
}

export async function purgeTicks(q: Q, olderThanDays: number): Promise<number> {
  const r = await q.query(
    `delete from etl_schedule_ticks where scheduled_for < now() - make_interval(days => $1) and outcome <> 'pending'`, [olderThanDays]);
  return r.rowCount ?? 0;
}

export async function resolveTicks(q: Q, list: {
  pipelineId: string; scheduledFor: Date; outcome: TickOutcome; runId?: string | null; detail?: string | null; lagMs?: number | null;
}[]): Promise<void> {
  if (list.length === 0) return;
  await q.query(
    `update etl_schedule_ticks t set outcome = v.outcome, run_id = v.run_id, detail = coalesce(v.detail, t.detail), lag_ms = v.lag_ms,
       recorded_at = now()
     from unnest($1::text[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[], $6::int[]) as v(pipeline_id, scheduled_for, outcome, run_id, detail, lag_ms)
     where t.pipeline_id = v.pipeline_id and t.scheduled_for = v.scheduled_for and t.outcome = 'pending'`,
    [list.map((x) => x.pipelineId), list.map((x) => x.scheduledFor), list.map((x) => x.outcome), list.map((x) => x.runId ?? null),
      list.map((x) => x.detail ?? null), list.map((x) => x.lagMs ?? null)],
  );
}

/** The runs that scheduled ticks already have, keyed `${pipelineId}|${epochMs}`. */
export async function scheduledRunIds(q: Q, ticks: { pipelineId: string; scheduledFor: Date }[]): Promise<Map<string, string>> {
  if (ticks.length === 0) return new Map();
  const { rows } = await q.query<{ pipeline_id: string; scheduled_for: Date; id: string }>(
    `select r.pipeline_id, r.scheduled_for, r.id from etl_runs r
     join unnest($1::text[], $2::timestamptz[]) as v(pipeline_id, scheduled_for)
       on r.pipeline_id = v.pipeline_id and r.scheduled_for = v.scheduled_for and r.trigger = 'schedule'`,
    [ticks.map((t) => t.pipelineId), ticks.map((t) => t.scheduledFor)],
  );
  return new Map(rows.map((r) => [`${r.pipeline_id}|${r.scheduled_for.getTime()}`, r.id]));
}

/** Scheduler health for /metrics: how late recent ticks fired, how many claimed ticks
 *  nobody handled, and each pipeline's cursor (the caller works out overdue ones). */
export async function schedulerHealth(q: Q, windowMinutes = 15): Promise<{
  maxLagMs: number | null; p99LagMs: number | null; stalePending: number; fired: number; skipped: number; missed: number;
}> {
  const { rows } = await q.query<{
    max_lag: number | null; p99_lag: number | null; stale_pending: number; fired: number; skipped: number; missed: number;
  }>(
    `select max(lag_ms) as max_lag, percentile_disc(0.99) within group (order by lag_ms) as p99_lag,
       count(*) filter (where outcome = 'pending' and recorded_at < now() - interval '30 seconds')::int as stale_pending,
       count(*) filter (where outcome = 'fired')::int as fired,
       count(*) filter (where outcome in ('skipped_overlap', 'skipped_disabled'))::int as skipped,
       count(*) filter (where outcome = 'missed')::int as missed
     from etl_schedule_ticks where scheduled_for > now() - make_interval(mins => $1)`,
    [windowMinutes],
  );
  const r = rows[0];
  return { maxLagMs: r.max_lag, p99LagMs: r.p99_lag, stalePending: r.stale_pending, fired: r.fired, skipped: r.skipped, missed: r.missed };
}

/** Enabled pipelines whose scheduler cursor is behind a due tick by more than `graceMs`:
 *  nobody is scheduling them (all workers down, or a stuck scheduler). */
export async function enabledCursors(q: Q): Promise<{ id: string; cron: string; timezone: string; cursor: Date | null }[]> {
  const { rows } = await q.query<{ id: string; cron: string; timezone: string; cursor: Date | null }>(
    `select id, cron, timezone, schedule_cursor as cursor from etl_pipelines where enabled`);
  return rows;
}
