import type pg from 'pg';

/**
 * The per-attempt event log (SPEC §14) in `etl_step_attempts.events`: at most
 * STEP_EVENTS_MAX events, the oldest dropped first and counted in `events_dropped`.
 * Events are appended in batches (the runner buffers them and flushes with checkpoint
 * saves, at the attempt's end and every few seconds), never one statement per event.
 */

type Q = Pick<pg.Pool, 'query'>;

export const STEP_EVENTS_MAX = 200;

export interface StepEvent {
  at: string;
  type: string;
  message: string;
  data?: Record<string, unknown>;
}

export interface EventBatch {
  events: StepEvent[];
  /** Events the buffer itself already dropped (more than STEP_EVENTS_MAX between flushes). */
  dropped: number;
}

/** Appends a batch to one attempt's log, keeping its newest STEP_EVENTS_MAX events. Not
 *  fenced: an attempt's log is its own, whatever became of the step since. */
export async function appendStepEvents(q: Q, a: { runId: string; key: string; attempt: number } & EventBatch): Promise<void> {
  if (a.events.length === 0 && a.dropped === 0) return;
  await q.query({
    name: 'etl-append-step-events',
    text: `update etl_step_attempts t set
       events = (select coalesce(jsonb_agg(x.e order by x.i), '[]'::jsonb)
                 from jsonb_array_elements(t.events || $4::jsonb) with ordinality x(e, i)
                 where x.i > jsonb_array_length(t.events) + jsonb_array_length($4::jsonb) - ${STEP_EVENTS_MAX}),
       events_dropped = t.events_dropped + $5 + greatest(0, jsonb_array_length(t.events) + jsonb_array_length($4::jsonb) - ${STEP_EVENTS_MAX})
     where t.run_id = $1 and t.step_key = $2 and t.attempt = $3`,
    values: [a.runId, a.key, a.attempt, JSON.stringify(a.events), a.dropped],
  });
}

export interface AttemptEvents {
  attempt: number;
  status: string;
  startedAt: string;
  finishedAt: string | null;
  dropped: number;
  events: StepEvent[];
}

interface AttemptRow {
  key: string; attempt: number; status: string; started_at: string; finished_at: string | null; events_dropped: number; events: StepEvent[];
}

/** Every attempt's log of one step (or one attempt's), newest attempt first. Null when
 *  the run has no such step. */
export async function listStepEvents(q: Q, runId: string, key: string, attempt?: number): Promise<AttemptEvents[] | null> {
  // A step with no (matching) attempt comes back as one row with null attempt columns (the left join).
  const { rows } = await q.query<AttemptRow | (Record<Exclude<keyof AttemptRow, 'key'>, null> & { key: string })>(
    `select s.key, a.attempt, a.status, to_char(a.started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as started_at,
       to_char(a.finished_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as finished_at, a.events_dropped, a.events
     from etl_run_steps s left join etl_step_attempts a
       on a.run_id = s.run_id and a.step_key = s.key and ($3::int is null or a.attempt = $3)
     where s.run_id = $1 and s.key = $2
     order by a.attempt desc`,
    [runId, key, attempt ?? null],
  );
  if (rows.length === 0) return null;
  return rows.filter((r): r is AttemptRow => r.attempt !== null).map((r) => ({
    attempt: r.attempt, status: r.status, startedAt: r.started_at, finishedAt: r.finished_at, dropped: r.events_dropped, events: r.events,
  }));
}
