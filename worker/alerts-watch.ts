import type { Redis } from 'ioredis';
import * as alerts from '../db/alerts';
import type { Database } from '../db/client';
import { listPipelines } from '../db/pipelines';
import { enabledCursors } from '../db/schedule';
import { nextFireTime } from '../lib/cron';
import type { Logger } from '../lib/logger';
import { listDatasetFreshness } from '../workflows/freshness';

/**
 * The conditions that are not a single state change: dataset staleness and overdue
 * schedule ticks, evaluated every `intervalMs` (≤ 15 s) by every replica. Each subject's
 * state moves by a guarded upsert that writes its alert in the same statement, so two
 * replicas evaluating at once still alert once per change.
 */
export interface AlertWatchOptions {
  db: Database;
  redis: Redis;
  log: Logger;
  intervalMs?: number;
  /** A due tick not fired within this is overdue (SPEC: 60 s). */
  lateMs?: number;
  now?: () => number;
}

export function createAlertWatch(o: AlertWatchOptions) {
  const now = o.now ?? Date.now;
  const lateMs = o.lateMs ?? 60_000;

  // The same verdicts as GET /datasets and the etl_dataset_* gauges (workflows/freshness.ts).
  async function datasets(): Promise<void> {
    const known = await alerts.subjectStates(o.db.pool, 'dataset:');
    for (const d of await listDatasetFreshness({ db: o.db, redis: o.redis }, new Date(now()))) {
      if (d.status === 'never' || known.get(`dataset:${d.dataset}`) === d.status) continue;
      const stale = d.status === 'stale';
      await alerts.transitionSubject(o.db.pool, {
        subject: `dataset:${d.dataset}`, state: d.status, alertOnFirst: stale, ref: d.runId,
        alert: {
          type: stale ? 'dataset.stale' : 'dataset.fresh', pipelineId: d.pipelineId, dataset: d.dataset, runId: d.runId,
          summary: stale
            ? `last published ${d.updatedAt} (${fmtAge(d.ageSeconds!)} ago), older than its max age of ${fmtAge(d.maxAgeSeconds)}${d.reason ? `: ${d.reason}` : ''}`
            : `published ${d.updatedAt} by run ${d.runId ?? 'unknown'}`,
          details: { ageSeconds: d.ageSeconds, maxAgeSeconds: d.maxAgeSeconds, updatedAt: d.updatedAt },
        },
      });
    }
  }

  async function schedules(pipelines: Awaited<ReturnType<typeof listPipelines>>): Promise<void> {
    const t = now();
    const overdue = new Map<string, { scheduledFor: Date; why: string }>();
    for (const p of await enabledCursors(o.db.pool)) {
      if (!p.cursor) continue;
      const next = nextFireTime(p.cron, p.timezone, p.cursor);
      if (next && t - next.getTime() > lateMs) overdue.set(p.id, { scheduledFor: next, why: 'no scheduler has handled it' });
    }
    for (const r of await alerts.overdueTicks(o.db.pool, lateMs)) {
      if (overdue.has(r.pipelineId)) continue;
      overdue.set(r.pipelineId, {
        scheduledFor: r.scheduledFor,
        why: r.outcome === 'pending' ? 'claimed but not fired' : r.outcome === 'missed' ? 'missed while no scheduler ran' : 'fired late',
      });
    }
    const known = await alerts.subjectStates(o.db.pool, 'schedule:');
    for (const p of pipelines) {
      const subject = `schedule:${p.id}`;
      const o2 = overdue.get(p.id);
      const state = o2 ? 'overdue' : 'ok';
      if ((known.get(subject) ?? 'ok') === state) continue;
      await alerts.transitionSubject(o.db.pool, {
        subject, state, alertOnFirst: state === 'overdue', alertOnChange: state === 'overdue',
        alert: {
          type: 'schedule.overdue', pipelineId: p.id,
          summary: o2 ? `the tick due at ${o2.scheduledFor.toISOString()} was not fired within ${Math.round(lateMs / 1000)} s (${o2.why})` : 'ok',
          details: o2 ? { scheduledFor: o2.scheduledFor.toISOString() } : null,
        },
      });
    }
  }

  async function pass(): Promise<void> {
    const pipelines = await listPipelines(o.db.pool);
    await datasets();
    await schedules(pipelines);
  }
  return { pass };
}

function fmtAge(s: number): string {
  if (s < 120) return `${s} s`;
  if (s < 7_200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3_600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

export function startAlertWatch(o: AlertWatchOptions): { stop(): Promise<void> } {
  const w = createAlertWatch(o);
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let busy = false;
  const timer = setInterval(() => {
    if (stopped || busy) return;
    busy = true;
    running = w.pass()
      .catch((err: unknown) => o.log.warn({ err: String(err) }, 'alert evaluation failed; retrying next pass'))
      .finally(() => (busy = false));
  }, o.intervalMs ?? 10_000);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
