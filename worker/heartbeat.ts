import { writeFile, rename } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from '../lib/logger';
import { recordBeat } from '../lib/worker-presence';

/**
 * The worker's health, as something that can fail. Every `intervalMs` the heartbeat
 * checks that Redis answers on the BullMQ connections, that the BullMQ worker is running,
 * and that the scheduler loop and the reconciler have turned recently; only when all hold
 * does it record a beat in Redis (for the api and the page) and rewrite the heartbeat
 * file with the time. The container's healthcheck (scripts/healthcheck.ts) fails when
 * that time is older than HEARTBEAT_STALE_MS: a worker that lost Redis, or whose loops
 * hang, turns unhealthy within half a minute and healthy again at its next good beat.
 *
 * What must stay true: the file's `healthyAt` only moves forward after every check
 * passed in this process; a beat never waits longer than `timeoutMs` on anything.
 */

export const HEARTBEAT_INTERVAL_MS = 10_000;
export const HEARTBEAT_STALE_MS = 30_000;

export interface HeartbeatChecks {
  /** Redis connections BullMQ uses; each must answer PING. */
  redis: Redis[];
  /** The BullMQ worker is running (not closed, not crashed). */
  workerRunning: () => boolean;
  /** When the scheduler loop last finished a pass (ms), or undefined when it does not run here. */
  schedulerAt?: () => number;
  /** When the reconciler last finished a pass (ms). */
  reconcilerAt: () => number;
  /** How long a loop may go without finishing a pass before it counts as stuck. */
  schedulerMaxAgeMs?: number;
  reconcilerMaxAgeMs: number;
  activeSteps: () => number;
}

export interface HeartbeatOptions extends HeartbeatChecks {
  queueName: string;
  workerId: string;
  log: Logger;
  /** Written on every healthy beat: `{"healthyAt": ms, ...}`. */
  file?: string;
  intervalMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

export interface HeartbeatFile {
  workerId: string;
  healthyAt: number;
  checkedAt: number;
  checks: Record<string, string>; // 'ok' or the reason
}

/** A rejection's message, or the reason itself when it is not an Error-like object. */
function reasonText(reason: unknown): string {
  const message: unknown = (reason as { message?: unknown } | null | undefined)?.message;
  return String(message ?? reason);
}

async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

/** One round of checks: `ok` or the reason, per check. */
export async function checkHealth(o: HeartbeatChecks, now: number, timeoutMs: number): Promise<Record<string, string>> {
  const checks: Record<string, string> = {};
  const pings = await Promise.allSettled(o.redis.map((r) => within(r.ping(), timeoutMs)));
  const failed = pings.find((p): p is PromiseRejectedResult => p.status === 'rejected');
  checks.redis = failed ? `down: ${reasonText(failed.reason).slice(0, 200)}` : 'ok';
  checks.worker = o.workerRunning() ? 'ok' : 'not running';
  if (o.schedulerAt) {
    const age = now - o.schedulerAt();
    checks.scheduler = age <= (o.schedulerMaxAgeMs ?? 60_000) ? 'ok' : `stuck: last pass ${Math.round(age / 1000)} s ago`;
  }
  const rAge = now - o.reconcilerAt();
  checks.reconciler = rAge <= o.reconcilerMaxAgeMs ? 'ok' : `stuck: last pass ${Math.round(rAge / 1000)} s ago`;
  return checks;
}

export function startHeartbeat(o: HeartbeatOptions): { stop(): Promise<void>; beat(): Promise<boolean> } {
  const now = o.now ?? Date.now;
  const startedAt = new Date(now()).toISOString();
  let healthyAt = 0;
  let lastProblem = '';
  const beat = async (): Promise<boolean> => {
    const t = now();
    const checks = await checkHealth(o, t, o.timeoutMs ?? 5_000);
    const problems = Object.entries(checks).filter(([, v]) => v !== 'ok');
    if (problems.length === 0) {
      try {
        await within(recordBeat(o.redis[0], o.queueName, {
          id: o.workerId, host: hostname(), pid: process.pid, startedAt, at: new Date(t).toISOString(), active: o.activeSteps(),
        }), o.timeoutMs ?? 5_000);
        healthyAt = t;
      } catch (err) {
        checks.redis = `down: ${String((err as Error).message).slice(0, 200)}`;
      }
    }
    const problem = Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k}: ${v}`).join('; ');
    if (problem !== lastProblem) {
      if (problem) o.log.warn({ checks }, 'worker unhealthy: heartbeat withheld');
      else o.log.info('worker healthy again');
      lastProblem = problem;
    }
    if (o.file) {
      const body: HeartbeatFile = { workerId: o.workerId, healthyAt, checkedAt: t, checks };
      // Write-then-rename: the healthcheck never reads a half-written file.
      await writeFile(`${o.file}.tmp`, JSON.stringify(body)).then(() => rename(`${o.file}.tmp`, o.file!)).catch((err) => {
        o.log.warn({ err: String(err) }, 'could not write the heartbeat file');
      });
    }
    return problem === '';
  };
  let stopped = false;
  let running: Promise<unknown> = beat();
  const timer = setInterval(() => {
    if (stopped) return;
    running = running.then(beat, beat);
  }, o.intervalMs ?? HEARTBEAT_INTERVAL_MS);
  timer.unref();
  return {
    beat: () => (running = running.then(beat, beat)),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running.catch(() => {});
    },
  };
}
