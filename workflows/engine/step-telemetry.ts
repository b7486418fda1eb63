import type { Database } from '../../db/client';
import { appendStepEvents, STEP_EVENTS_MAX, type EventBatch, type StepEvent } from '../../db/step-events';
import type { Logger } from '../../lib/logger';
import { redact } from '../../lib/redact';
import type { StepProgress } from '../../steps/define';
import type { EventBus } from './events';

/**
 * What a running step tells the operator besides its state (SPEC §14):
 * - an event log per attempt, buffered here and written in batches (with each checkpoint
 *   save, at the attempt's end, and every FLUSH_MS while events wait), so an event never
 *   costs a Postgres round trip of its own;
 * - live progress, published on the Redis event bus at most once a second (the latest
 *   figures win; Postgres never sees them).
 */
export const FLUSH_MS = 5_000;
export const PROGRESS_MS = 1_000;

/** event and progress are plain functions (no `this`): the runner hands them to the step
 *  context as they are. */
export interface StepTelemetry {
  event: (type: string, message: string, data?: Record<string, unknown>) => void;
  progress: (p: StepProgress) => void;
  /** Takes what is buffered (the caller writes it, e.g. with a checkpoint save). */
  drain(): EventBatch;
  /** Writes what is buffered now. Never throws: the log is a view, not state. */
  flush(): Promise<void>;
  /** Stops the timers and writes what is left. */
  close(): Promise<void>;
}

export function createStepTelemetry(a: {
  db: Database; events: EventBus; log: Logger; runId: string; pipelineId: string; key: string; attempt: number;
}): StepTelemetry {
  let buf: StepEvent[] = [];
  let dropped = 0;
  let flushTimer: NodeJS.Timeout | null = null;
  let closed = false;

  const drain = (): EventBatch => {
    const out = { events: buf, dropped };
    buf = [];
    dropped = 0;
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = null;
    return out;
  };
  const write = async (batch: EventBatch) => {
    try {
      await appendStepEvents(a.db.pool, { runId: a.runId, key: a.key, attempt: a.attempt, ...batch });
    } catch (err) {
      a.log.warn({ err: String(err), events: batch.events.length }, 'could not write step events');
    }
  };
  const flush = () => write(drain());

  // Progress: the latest figures, sent at most once per PROGRESS_MS (a trailing send
  // carries the last update of a burst).
  const started = Date.now();
  let cur: StepProgress = { rowsDone: 0 };
  let base: { rows: number; at: number } | null = null;
  let lastSent = 0;
  let progressTimer: NodeJS.Timeout | null = null;
  const sendProgress = () => {
    progressTimer = null;
    if (closed) return;
    lastSent = Date.now();
    const b = base ?? { rows: cur.rowsDone ?? 0, at: started };
    const secs = (lastSent - b.at) / 1000;
    const rowsPerSec = secs > 0 ? Math.max(0, Math.round(((cur.rowsDone ?? 0) - b.rows) / secs)) : 0;
    a.events.progress({ runId: a.runId, pipelineId: a.pipelineId, step: a.key, attempt: a.attempt, ...cur, rowsDone: cur.rowsDone ?? 0, rowsPerSec });
  };

  return {
    event(type, message, data) {
      if (closed) return;
      // `data` is stored and served as well: its strings are redacted like the message, so no
      // secret reaches Postgres or the API whatever a step passes.
      buf.push({ at: new Date().toISOString(), type, message: redact(message, { max: 500 }), ...(data ? { data: redactData(data) as Record<string, unknown> } : {}) });
      if (buf.length > STEP_EVENTS_MAX) {
        buf.shift();
        dropped++;
      }
      flushTimer ??= setTimeout(() => void flush(), FLUSH_MS).unref();
    },
    progress(p) {
      if (closed) return;
      // The first figure is the baseline for the rate: a resumed step starts part-way.
      if (!base && p.rowsDone !== undefined) base = { rows: p.rowsDone, at: Date.now() };
      cur = { ...cur, ...p };
      if (progressTimer) return;
      const wait = PROGRESS_MS - (Date.now() - lastSent);
      if (wait <= 0) sendProgress();
      else progressTimer = setTimeout(sendProgress, wait).unref();
    },
    drain,
    flush,
    async close() {
      closed = true;
      if (progressTimer) clearTimeout(progressTimer);
      progressTimer = null;
      await flush();
    },
  };
}

function redactData(v: unknown): unknown {
  if (typeof v === 'string') return redact(v, { max: 2_000 });
  if (Array.isArray(v)) return v.map(redactData);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactData(x)]));
  return v;
}
