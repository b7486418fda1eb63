import type pg from 'pg';
import type { AlertDeliveryState, AlertType } from './schema';

/**
 * The alert outbox (SPEC §12) and the per-subject alert state.
 *
 * What must stay true:
 * - An alert row is written by the statement (or transaction) that makes the change it
 *   reports, so a committed change always has its alert and a rolled-back one never does.
 *   The run-ending statements in ./steps.ts and ./runs.ts splice in the CTEs below.
 * - Paired alerts (failed/recovered, stale/fresh, overdue) fire once per change: the
 *   subject's row in etl_alert_state is moved by a guarded upsert, and the alert is
 *   inserted only from the rows that upsert actually changed (row lock = no double).
 * - A sender owns a row only while its lease runs (claimed with FOR UPDATE SKIP LOCKED);
 *   every outcome write is fenced by `claimed_by` and `attempts`, so a sender that lost
 *   its lease (it hung, or another replica took over after its crash) changes nothing.
 */

type Q = Pick<pg.Pool, 'query'>;

/** CTEs for a statement whose CTE `ru` ends runs as failed, returning (id, pipeline_id, error). */
export const RUN_FAILED_ALERT_CTES = `
     alert_failing as (
       insert into etl_alert_state (subject, state, since, count, ref)
       select 'run:' || ru.pipeline_id, 'failing', now(), 1, ru.id::text from ru
       on conflict (subject) do update set
         since = case when etl_alert_state.state = 'failing' then etl_alert_state.since else now() end,
         count = case when etl_alert_state.state = 'failing' then etl_alert_state.count + 1 else 1 end,
         state = 'failing', ref = excluded.ref, updated_at = now()),
     alert_failed as (
       insert into etl_alerts (id, type, pipeline_id, run_id, summary)
       select gen_random_uuid(), 'run.failed', ru.pipeline_id, ru.id, left(coalesce(ru.error, 'failed'), 1000) from ru)`;

/** CTEs for a statement whose CTE `ru` ends runs as succeeded, returning (id, pipeline_id):
 *  the first success after failures moves `run:<pipeline>` back to ok and reports it.
 *  `old` is the row as it was before this statement (the self-join reads the snapshot). */
export const RUN_RECOVERED_ALERT_CTES = `
     alert_ok as (
       update etl_alert_state s set state = 'ok', since = now(), count = 0, ref = ru.id::text, updated_at = now()
       from ru, etl_alert_state old
       where s.subject = 'run:' || ru.pipeline_id and s.state = 'failing' and old.subject = s.subject
       returning ru.id, ru.pipeline_id, old.since, old.count, old.ref),
     alert_recovered as (
       insert into etl_alerts (id, type, pipeline_id, run_id, summary, details)
       select gen_random_uuid(), 'run.recovered', pipeline_id, id,
         'succeeded after ' || count || ' failed run' || case when count = 1 then '' else 's' end,
         jsonb_build_object('failingSince', since, 'lastFailedRunId', ref)
       from alert_ok)`;

export interface NewAlert {
  type: AlertType;
  pipelineId?: string | null;
  runId?: string | null;
  dataset?: string | null;
  summary: string;
  details?: Record<string, unknown> | null;
}

export async function insertAlert(q: Q, a: NewAlert): Promise<string> {
  const { rows } = await q.query<{ id: string }>(
    `insert into etl_alerts (id, type, pipeline_id, run_id, dataset, summary, details)
     values (gen_random_uuid(), $1, $2, $3, $4, $5, $6) returning id`,
    [a.type, a.pipelineId ?? null, a.runId ?? null, a.dataset ?? null, a.summary, a.details ?? null],
  );
  return rows[0].id;
}

/**
 * Moves a subject to `state` and, in the same statement, writes `alert` when that is a
 * change (unless `alertOnChange` is false) or when the subject was never seen and
 * `alertOnFirst` is true. Returns the
 * alert's id, or null when nothing changed. Safe to call from every replica at once.
 */
export async function transitionSubject(q: Q, a: {
  subject: string; state: string; alert: NewAlert; alertOnFirst: boolean; alertOnChange?: boolean; ref?: string | null;
}): Promise<string | null> {
  const { rows } = await q.query<{ id: string }>(
    `with t as (
       insert into etl_alert_state (subject, state, since, count, ref) values ($1, $2, now(), 1, $9)
       on conflict (subject) do update set state = excluded.state, since = now(), count = 1, ref = excluded.ref, updated_at = now()
       where etl_alert_state.state is distinct from excluded.state
       returning (xmax = 0) as inserted)
     insert into etl_alerts (id, type, pipeline_id, run_id, dataset, summary, details)
     select gen_random_uuid(), $3, $4, $5, $6, $7, $8 from t where (not t.inserted and $11) or (t.inserted and $10)
     returning id`,
    [a.subject, a.state, a.alert.type, a.alert.pipelineId ?? null, a.alert.runId ?? null, a.alert.dataset ?? null,
      a.alert.summary, a.alert.details ?? null, a.ref ?? null, a.alertOnFirst, a.alertOnChange ?? true],
  );
  return rows[0]?.id ?? null;
}

/** The current state of subjects with this prefix (e.g. 'dataset:'). */
export async function subjectStates(q: Q, prefix: string): Promise<Map<string, string>> {
  const { rows } = await q.query<{ subject: string; state: string }>(`select subject, state from etl_alert_state where starts_with(subject, $1)`, [prefix]);
  return new Map(rows.map((r) => [r.subject, r.state]));
}

export interface OutboxRow {
  id: string;
  type: AlertType;
  occurredAt: Date;
  pipelineId: string | null;
  runId: string | null;
  dataset: string | null;
  summary: string;
  details: Record<string, unknown> | null;
  attempts: number;
}

const OUTBOX_COLS = `id, type, occurred_at as "occurredAt", pipeline_id as "pipelineId", run_id as "runId", dataset, summary, details, attempts`;

/** Claims due alerts for one delivery attempt each: skips rows another sender is
 *  claiming right now, and rows whose lease has not run out. */
export async function claimDueAlerts(q: Q, a: { worker: string; leaseMs: number; limit: number }): Promise<OutboxRow[]> {
  const { rows } = await q.query<OutboxRow>({
    name: 'etl-claim-alerts',
    text: `update etl_alerts set attempts = attempts + 1, claimed_by = $1,
         lease_until = now() + make_interval(secs => $2::float8 / 1000)
       where id in (
         select id from etl_alerts
         where state = 'pending' and next_attempt_at <= now() and (lease_until is null or lease_until < now())
         order by next_attempt_at limit $3 for update skip locked)
       returning ${OUTBOX_COLS}`,
    values: [a.worker, a.leaseMs, a.limit],
  });
  return rows;
}

/** Records the outcome of an attempt made under a claim. `retryInMs` null gives up (failed). */
export async function recordAttempt(q: Q, a: {
  id: string; worker: string; attempt: number; delivered: boolean; status?: number | null; error?: string | null; retryInMs?: number | null;
}): Promise<boolean> {
  const state: AlertDeliveryState = a.delivered ? 'delivered' : a.retryInMs == null ? 'failed' : 'pending';
  const r = await q.query({
    name: 'etl-record-alert-attempt',
    text: `update etl_alerts set state = $4, last_status = $5, last_error = $6, lease_until = null,
         delivered_at = case when $4 = 'delivered' then now() else delivered_at end,
         next_attempt_at = now() + make_interval(secs => coalesce($7::float8, 0) / 1000)
       where id = $1 and claimed_by = $2 and attempts = $3 and state = 'pending'`,
    values: [a.id, a.worker, a.attempt, state, a.status ?? null, a.error ?? null, a.retryInMs ?? null],
  });
  return r.rowCount === 1;
}

/** With no webhook configured, alerts are recorded (and listed) but never sent. */
export async function skipPendingAlerts(q: Q): Promise<number> {
  const r = await q.query(
    `update etl_alerts set state = 'skipped', last_error = 'ALERT_WEBHOOK_URL is not set', lease_until = null
     where state = 'pending' and (lease_until is null or lease_until < now())`);
  return r.rowCount ?? 0;
}

export interface AlertListRow extends OutboxRow {
  state: AlertDeliveryState;
  nextAttemptAt: Date | null;
  lastError: string | null;
  lastStatus: number | null;
  deliveredAt: Date | null;
}

export async function listAlerts(q: Q, limit: number): Promise<AlertListRow[]> {
  const { rows } = await q.query<AlertListRow>(
    `select ${OUTBOX_COLS}, state, case when state = 'pending' then greatest(next_attempt_at, lease_until) end as "nextAttemptAt",
       last_error as "lastError", last_status as "lastStatus", delivered_at as "deliveredAt"
     from etl_alerts order by occurred_at desc, id limit $1`,
    [limit],
  );
  return rows;
}

/** For /metrics: alerts waiting to be delivered, and those given up on. */
export async function alertCounts(q: Q): Promise<{ pending: number; failed: number; oldestPendingSeconds: number }> {
  const { rows } = await q.query<{ pending: number; failed: number; oldest: number }>(
    `select count(*) filter (where state = 'pending')::int as pending, count(*) filter (where state = 'failed')::int as failed,
       coalesce(extract(epoch from now() - min(occurred_at) filter (where state = 'pending')), 0)::float8 as oldest
     from etl_alerts where state in ('pending', 'failed')`,
  );
  const r = rows[0];
  return { pending: r.pending, failed: r.failed, oldestPendingSeconds: r.oldest };
}

/**
 * Ticks not fired within `lateMs` of their time (SPEC §12 `schedule.overdue`), per enabled
 * pipeline, from the tick log: claimed but still pending (not catch-up ticks waiting their
 * turn), or logged missed or fired late in the last `windowMinutes`. The other case, an
 * enabled pipeline whose cursor no scheduler moves, is worked out by the caller from
 * `schedule_cursor` (the tick has no row yet).
 */
export async function overdueTicks(q: Q, lateMs: number, windowMinutes = 10): Promise<{ pipelineId: string; scheduledFor: Date; outcome: string }[]> {
  const { rows } = await q.query<{ pipelineId: string; scheduledFor: Date; outcome: string }>(
    `select distinct on (t.pipeline_id) t.pipeline_id as "pipelineId", t.scheduled_for as "scheduledFor", t.outcome
     from etl_schedule_ticks t join etl_pipelines p on p.id = t.pipeline_id and p.enabled
     where t.scheduled_for > now() - make_interval(mins => $2)
       and ((t.outcome = 'pending' and not t.catch_up and t.scheduled_for < now() - make_interval(secs => $1::float8 / 1000))
         or t.outcome = 'missed'
         or (t.outcome = 'fired' and not t.catch_up and t.lag_ms > $1))
     order by t.pipeline_id, t.scheduled_for desc`,
    [lateMs, windowMinutes],
  );
  return rows;
}
