import type { Database } from '../db/client';
import { recordAudit } from '../db/audit';
import * as sched from '../db/schedule';
import type { Actor } from '../db/schema';
import { fireTimesBetween, nextFireTime, validateSchedule } from '../lib/cron';
import type { Logger } from '../lib/logger';
import { ConflictError } from '../lib/errors';
import type { Engine } from '../workflows/engine/engine';

/**
 * The cron scheduler, run by every worker replica. Each pass reads the pipelines, works
 * out the ticks due since each pipeline's cursor (cron-parser, in the pipeline's zone),
 * claims them by inserting them into the tick log (primary key = pipeline + tick, so
 * exactly one replica wins each tick) and fires the ones it won. Postgres holds all
 * state, so edits to cron, zone or enabled take effect on the next pass, no restart.
 *
 * Disabled pipelines write no tick rows; their cursor advances all the same.
 *
 * A tick found more than `lateMs` after it was due was missed while no scheduler ran;
 * the pipeline's catch-up policy decides: none (log it missed), latest (fire only the
 * newest), all (fire each, oldest first, up to catchup_cap, one at a time).
 */
export interface SchedulerOptions {
  db: Database;
  engine: Pick<Engine, 'triggerMany'>;
  log: Logger;
  workerId: string;
  now?: () => number;
  intervalMs?: number;
  lateMs?: number;
  /** A claimed tick left pending this long is re-fired (its claimer died) and, past
   *  `watchdogMs`, reported as an error. */
  retryPendingMs?: number;
  watchdogMs?: number;
  /** Test hook: run six-field (seconds) schedules. Off, such a schedule is invalid and
   *  never fires: minute resolution is the contract (SPEC §7). */
  allowSeconds?: boolean;
}

const SCHEDULE: Actor = { kind: 'schedule' };

export interface SchedulerStats {
  passes: number;
  fired: number;
  overduePending: number;
  lastPassMs: number;
  /** When the loop last finished a pass, successful or not (the heartbeat's "loop alive"). */
  lastLoopAt: number;
}

/** What one scheduler keeps between passes (all durable state is in Postgres). */
interface SchedulerState {
  o: SchedulerOptions;
  now: () => number;
  lateMs: number;
  // Per pipeline: when its next tick is due, so most passes skip the cron maths.
  nextDue: Map<string, { key: string; at: number }>;
  invalidLogged: Set<string>;
  stats: SchedulerStats;
}

export function createScheduler(o: SchedulerOptions) {
  const now = o.now ?? Date.now;
  const s: SchedulerState = {
    o, now, lateMs: o.lateMs ?? 60_000, nextDue: new Map(), invalidLogged: new Set(),
    stats: { passes: 0, fired: 0, overduePending: 0, lastPassMs: 0, lastLoopAt: now() },
  };
  return {
    pass: (): Promise<void> => runPass(s),
    sweepPending: (): Promise<void> => sweepPendingTicks(s),
    stats: s.stats,
  };
}

/** Starts the runs of claimed ticks in bulk and records each tick's outcome. */
async function fireTicks(s: SchedulerState, ticks: sched.TickClaim[]): Promise<void> {
  const { o, now, stats } = s;
  for (let i = 0; i < ticks.length; i += 500) {
    const batch = ticks.slice(i, i + 500);
    const started = now();
    let results: Awaited<ReturnType<Engine['triggerMany']>>;
    try {
      results = await o.engine.triggerMany(batch.map((t) => ({ pipelineId: t.pipelineId, trigger: 'schedule' as const, scheduledFor: t.scheduledFor, actor: SCHEDULE })));
    } catch (err) {
      o.log.error({ ticks: batch.length, err: String(err) }, 'could not fire ticks; they stay pending and are retried');
      continue;
    }
    const lagMs = (t: sched.TickClaim) => Math.max(0, started - t.scheduledFor.getTime());
    const conflicted = batch.filter((_, j) => 'error' in results[j] && results[j].error instanceof ConflictError);
    const existing = await sched.scheduledRunIds(o.db.pool, conflicted);
    const outcomes: Parameters<typeof sched.resolveTicks>[1] = [];
    batch.forEach((t, j) => {
      const r = results[j];
      if ('runId' in r) {
        stats.fired++;
        outcomes.push({ ...t, outcome: 'fired', runId: r.runId, lagMs: lagMs(t) });
      } else if (r.error instanceof ConflictError && r.error.code !== 'unknown_workflow') {
        const runId = existing.get(`${t.pipelineId}|${t.scheduledFor.getTime()}`);
        // Another replica already started this tick's run; or a run is still active:
        // an on-time tick is skipped (no overlapping runs), a catch-up tick waits.
        if (runId) outcomes.push({ ...t, outcome: 'fired', runId });
        else if (!t.catchUp) outcomes.push({ ...t, outcome: 'skipped_overlap', detail: 'the previous run was still active', lagMs: lagMs(t) });
      } else {
        outcomes.push({ ...t, outcome: 'missed', detail: r.error.message });
      }
    });
    await sched.resolveTicks(o.db.pool, outcomes);
    const scheduled = batch.flatMap((t, j) => {
      const r = results[j];
      return 'runId' in r ? [{ actor: SCHEDULE, action: 'run.scheduled', pipelineId: t.pipelineId, runId: r.runId,
        details: { scheduledFor: t.scheduledFor.toISOString(), catchUp: t.catchUp } }] : [];
    });
    // The runs and ticks are committed: a failed audit insert is reported, not retried.
    await recordAudit(o.db.pool, scheduled).catch((err: unknown) => o.log.error({ runs: scheduled.length, err: String(err) }, 'could not record scheduled runs in the audit log'));
  }
}

function classifyTicks(row: sched.ScheduleRow, due: Date[], at: number, lateMs: number): sched.TickClaim[] {
  // A disabled pipeline's ticks are not logged: a tick row per due tick of every disabled
  // pipeline is write load and noise with nothing to learn from. Its cursor still moves
  // (see pass), so enabling it later does not replay the disabled period.
  if (!row.enabled) return [];
  const claims: sched.TickClaim[] = [];
  const late = due.filter((d) => at - d.getTime() > lateMs);
  const onTime = due.filter((d) => at - d.getTime() <= lateMs);
  const fireLate = row.catchup === 'none' ? [] : row.catchup === 'latest' ? late.slice(-1) : late.slice(-row.catchupCap);
  for (const d of late) {
    const catchUp = fireLate.includes(d);
    claims.push({
      pipelineId: row.id, scheduledFor: d, catchUp,
      outcome: catchUp ? 'pending' : 'missed',
      detail: catchUp ? null : `missed while no scheduler ran (catch-up policy: ${row.catchup})`,
    });
  }
  for (const d of onTime) claims.push({ pipelineId: row.id, scheduledFor: d, catchUp: false, outcome: 'pending' });
  return claims;
}

type CronResult = { invalid: string | null; due: Date[]; next: Date | null };

/** The cron maths of one pass, memoised by (cron, zone, cursor, catch-up cap). */
function cronPlanner(allowSeconds: boolean | undefined, at: Date): (row: sched.ScheduleRow) => CronResult {
  // Many pipelines share a schedule (and, once in step, a cursor): do the cron maths
  // once per distinct (cron, zone, cursor) in a pass.
  const memo = new Map<string, CronResult>();
  return (row) => {
    const k = `${row.cron}|${row.timezone}|${row.cursor!.getTime()}|${row.catchupCap}`;
    let m = memo.get(k);
    if (!m) {
      const invalid = validateSchedule(row.cron, row.timezone, { allowSeconds });
      // Walk at most a bounded number of ticks: after a long downtime only the recent
      // ones matter to the catch-up policy.
      const due = invalid ? [] : fireTimesBetween(row.cron, row.timezone, row.cursor!, at, Math.max(row.catchupCap, 1) + 50);
      m = { invalid, due, next: invalid || due.length ? null : nextFireTime(row.cron, row.timezone, row.cursor!) };
      memo.set(k, m);
    }
    return m;
  };
}

/** The ticks each pipeline should claim this pass, and where each cursor moves to. */
function planTicks(s: SchedulerState, rows: sched.ScheduleRow[], t0: number): { claims: sched.TickClaim[]; moves: { id: string; to: Date }[] } {
  const { o, nextDue, invalidLogged } = s;
  const cronFor = cronPlanner(o.allowSeconds, new Date(t0));
  const claims: sched.TickClaim[] = [];
  const moves: { id: string; to: Date }[] = [];
  for (const row of rows) {
    if (!row.cursor) continue;
    const key = `${row.cron}|${row.timezone}|${row.cursor.getTime()}`;
    const cached = nextDue.get(row.id);
    if (cached && cached.key === key && t0 < cached.at) continue;
    const { invalid, due, next } = cronFor(row);
    if (invalid) {
      if (!invalidLogged.has(row.id)) o.log.error({ pipelineId: row.id, error: invalid }, 'pipeline has an invalid schedule; not scheduling it');
      invalidLogged.add(row.id);
      continue;
    }
    invalidLogged.delete(row.id);
    if (due.length === 0) {
      nextDue.set(row.id, { key, at: next ? next.getTime() : Infinity });
      continue;
    }
    claims.push(...classifyTicks(row, due, t0, s.lateMs));
    moves.push({ id: row.id, to: due[due.length - 1] });
  }
  return { claims, moves };
}

async function runPass(s: SchedulerState): Promise<void> {
  const { o, now, stats } = s;
  const t0 = now();
  const at = new Date(t0);
  const rows = await sched.loadSchedules(o.db.pool);
  await sched.initCursors(o.db.pool, rows.filter((r) => !r.cursor).map((r) => r.id), at);
  const { claims, moves } = planTicks(s, rows, t0);
  const won = await sched.claimTicks(o.db.pool, claims, o.workerId);
  await sched.advanceCursors(o.db.pool, moves);
  // Fire catch-up ticks oldest first, one per pipeline per pass (runs may not overlap).
  const firstCatchUp = new Set<string>();
  await fireTicks(s, won.filter((t) => t.outcome === 'pending').filter((t) => {
    if (!t.catchUp) return true;
    if (firstCatchUp.has(t.pipelineId)) return false;
    firstCatchUp.add(t.pipelineId);
    return true;
  }));
  stats.passes++;
  stats.lastPassMs = now() - t0;
}

/** Re-fires ticks whose claimer died and catch-up ticks waiting for their turn. */
async function sweepPendingTicks(s: SchedulerState): Promise<void> {
  const { o, stats } = s;
  const stale = await sched.stalePendingTicks(o.db.pool, o.retryPendingMs ?? 5_000);
  stats.overduePending = stale.filter((t) => t.ageMs > (o.watchdogMs ?? 30_000)).length;
  for (const t of stale) {
    if (t.ageMs > (o.watchdogMs ?? 30_000) && !t.catchUp) {
      o.log.error({ pipelineId: t.pipelineId, tick: t.scheduledFor, ageMs: t.ageMs }, 'scheduler watchdog: a due tick has not been handled');
    }
  }
  await fireTicks(s, stale);
}

export function startScheduler(o: SchedulerOptions): { stop(): Promise<void>; stats: SchedulerStats } {
  const s = createScheduler(o);
  const interval = o.intervalMs ?? 1_000;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let sweeps = 0;
  const loop = () => {
    if (stopped) return;
    running = (async () => {
      try {
        await s.pass();
        if (sweeps++ % 5 === 0) await s.sweepPending();
      } catch (err) {
        o.log.warn({ err: String(err) }, 'scheduler pass failed; retrying next pass');
      }
    })();
    // The pass catches its own errors, so `running` resolves; this re-arms the loop.
    void running.finally(() => {
      s.stats.lastLoopAt = Date.now();
      if (stopped) return;
      // Align passes to the wall-clock interval (plus a few ms), so a tick is seen
      // right after it falls due.
      const wait = interval - (Date.now() % interval) + 5;
      timer = setTimeout(loop, wait);
    });
  };
  loop();
  return {
    stats: s.stats,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
