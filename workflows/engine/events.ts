import type { Redis } from 'ioredis';

/** Status changes, published on Redis pub/sub so every api process can stream them (SSE). */
export type EtlEvent =
  | { type: 'run'; runId: string; pipelineId: string; status: string; at: string }
  | { type: 'step'; runId: string; pipelineId: string; step: string; status: string; attempt?: number; at: string }
  /** A running step's live figures (SPEC §14), at most once a second per step; not stored. */
  | ({ type: 'progress'; at: string } & ProgressEvent)
  /** A pipeline's settings changed (enable, schedule): every api process drops what it cached. */
  | { type: 'pipeline'; pipelineId: string; at: string };

export interface ProgressEvent {
  runId: string;
  pipelineId: string;
  step: string;
  attempt: number;
  rowsDone: number;
  rowsTotal?: number;
  pagesDone?: number;
  rowsPerSec: number;
}

export const eventsChannel = (queueName: string) => `etl:${queueName}:events`;
export const cancelChannel = (queueName: string) => `etl:${queueName}:cancel`;

export interface EventBus {
  run(runId: string, pipelineId: string, status: string): void;
  step(runId: string, pipelineId: string, step: string, status: string, attempt?: number): void;
  pipeline(pipelineId: string): void;
  progress(p: ProgressEvent): void;
}

/**
 * Fire-and-forget: events are a live view; Postgres stays the source of truth. Events of
 * one event-loop turn go out in one pipeline (one socket write): syscalls, not Redis, are
 * what a busy worker pays for.
 */
export function createEventBus(redis: Redis, queueName: string): EventBus {
  const channel = eventsChannel(queueName);
  let pending: string[] = [];
  const flush = () => {
    const batch = pending;
    pending = [];
    const p = redis.pipeline();
    for (const m of batch) p.publish(channel, m);
    p.exec().catch(() => {});
  };
  const send = (e: EtlEvent) => {
    if (pending.push(JSON.stringify(e)) === 1) setImmediate(flush);
  };
  return {
    run: (runId, pipelineId, status) => send({ type: 'run', runId, pipelineId, status, at: new Date().toISOString() }),
    step: (runId, pipelineId, step, status, attempt) =>
      send({ type: 'step', runId, pipelineId, step, status, attempt, at: new Date().toISOString() }),
    pipeline: (pipelineId) => send({ type: 'pipeline', pipelineId, at: new Date().toISOString() }),
    progress: (p) => send({ type: 'progress', ...p, at: new Date().toISOString() }),
  };
}
