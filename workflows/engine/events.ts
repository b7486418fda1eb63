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

/** A message on the events channel is one event, or a JSON array of events: at most this
 *  many characters, so a subscriber's size check (server/sse.ts) never drops a batch. */
export const EVENTS_MESSAGE_MAX = 12 * 1024;

/** The events of one message on the events channel, in order (an array or a single event). */
export function eventsOf(message: unknown): unknown[] {
  return Array.isArray(message) ? message : [message];
}

/**
 * Fire-and-forget: events are a live view; Postgres stays the source of truth. Events of
 * one event-loop turn go out together, as one message (a JSON array when there are
 * several, up to EVENTS_MESSAGE_MAX) in one pipeline: a step's success and its next
 * step's start, or a group commit's worth of steps, cost one PUBLISH and one delivery to
 * each subscriber, not one per event.
 */
export function createEventBus(redis: Redis, queueName: string): EventBus {
  const channel = eventsChannel(queueName);
  let pending: string[] = [];
  const flush = () => {
    const batch = pending;
    pending = [];
    const messages: string[] = [];
    let part: string[] = [];
    let size = 0;
    const cut = () => {
      if (part.length) messages.push(part.length === 1 ? part[0] : `[${part.join(',')}]`);
      part = [];
      size = 0;
    };
    for (const m of batch) {
      if (size + m.length + 3 > EVENTS_MESSAGE_MAX) cut();
      part.push(m);
      size += m.length + 1;
    }
    cut();
    if (messages.length === 1) {
      redis.publish(channel, messages[0]).catch(() => {});
      return;
    }
    const p = redis.pipeline();
    for (const m of messages) p.publish(channel, m);
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
