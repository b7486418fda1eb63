import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Redis } from 'ioredis';
import type { Logger } from '../lib/logger';
import { eventsOf } from '../workflows/engine/events';
import type { SubscribeEvents } from './context';
import { HttpError } from './errors';

/**
 * Live run and step status for the /etl page. One Redis subscriber connection per api
 * process feeds every connected browser from memory, so N clients cost one connection,
 * not N. Events are a hint to re-fetch; Postgres stays the source of truth, so a client
 * that falls behind is disconnected (it reconnects and reloads) rather than buffered.
 */

export interface EventHub {
  subscribe: SubscribeEvents;
  /** Connected listeners, for tests and metrics. */
  readonly size: number;
  close(): Promise<void>;
}

/** `subscriber` becomes a dedicated subscriber connection: the hub owns and closes it. */
export async function createEventHub(subscriber: Redis, channel: string, log: Logger): Promise<EventHub> {
  const listeners = new Map<(data: string) => void, (() => void) | undefined>();
  subscriber.on('error', () => {});
  subscriber.on('message', (ch: string, message: string) => {
    if (ch !== channel) return;
    for (const data of normalise(message)) {
      for (const l of listeners.keys()) {
        try {
          l(data);
        } catch (err) {
          log.warn({ err: String(err) }, 'event listener failed');
        }
      }
    }
  });
  // ioredis re-subscribes by itself after a reconnect.
  await subscriber.subscribe(channel);
  return {
    subscribe(listener, onEnd) {
      listeners.set(listener, onEnd);
      return () => void listeners.delete(listener);
    },
    get size() {
      return listeners.size;
    },
    close() {
      const ends = [...listeners.values()];
      listeners.clear();
      for (const end of ends) end?.();
      subscriber.disconnect();
      return Promise.resolve();
    },
  };
}

/**
 * Only well-formed engine events are forwarded (the channel lives on a shared Redis), and
 * re-serialised compactly so no newline can break the SSE framing. A message carries one
 * event or an array of them (workflows/engine/events.ts); each goes out as its own frame.
 */
function normalise(message: string): string[] {
  if (message.length > 16 * 1024) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(message);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const x of eventsOf(parsed)) {
    const e = x as { type?: unknown; runId?: unknown; pipelineId?: unknown } | null;
    if (e && e.type === 'pipeline' && typeof e.pipelineId === 'string') out.push(JSON.stringify(e));
    else if (e && (e.type === 'run' || e.type === 'step' || e.type === 'progress') && typeof e.runId === 'string') out.push(JSON.stringify(e));
  }
  return out;
}

export interface SseOptions {
  heartbeatMs?: number;
  /** Writes a slow client may have outstanding before it is dropped. */
  maxPending?: number;
  /** How often a session's stream checks that the session still exists (default 30 s). */
  sessionCheckMs?: number;
}

/** Open streams of this process, capped so connections cannot exhaust it (503 past it). */
export interface StreamSlots {
  tryAcquire(): boolean;
  release(): void;
  readonly open: number;
}

export function createStreamSlots(max: number): StreamSlots {
  let open = 0;
  return {
    tryAcquire: () => (open < max ? (open++, true) : false),
    release: () => void (open = Math.max(0, open - 1)),
    get open() {
      return open;
    },
  };
}

/**
 * Ends a stream when its session ends: at the session's own expiry, and when a periodic
 * re-check finds it gone or expired (SP0 logged the user out). A failed check (Redis
 * away) keeps the stream: the next check decides.
 */
export interface StreamSession {
  expiresAt: number | null;
  stillValid(): Promise<boolean>;
}

export function streamEvents(c: Context, subscribe: SubscribeEvents, o: SseOptions & { slots?: StreamSlots; session?: StreamSession } = {}): Response {
  if (o.slots && !o.slots.tryAcquire()) {
    throw new HttpError(503, 'too_many_streams', 'too many live event streams are open; try again later');
  }
  // Proxies (nginx) must not buffer the stream.
  c.header('X-Accel-Buffering', 'no');
  return streamSSE(c, async (stream) => {
    const closed = new Promise<void>((resolve) => stream.onAbort(resolve));
    let pending = 0;
    const write = (chunk: string) => {
      if (stream.aborted || stream.closed) return;
      if (pending >= (o.maxPending ?? 1_000)) {
        stream.abort();
        return;
      }
      pending++;
      void stream.write(chunk).finally(() => pending--);
    };
    const unsubscribe = subscribe((data) => write(`data: ${data}\n\n`), () => stream.abort());
    const heartbeat = setInterval(() => write(': ping\n\n'), o.heartbeatMs ?? 15_000);
    const timers: NodeJS.Timeout[] = [];
    const session = o.session;
    if (session) {
      // setTimeout holds at most ~24.8 days; a later expiry is caught by the re-check.
      const untilEnd = session.expiresAt === null ? null : session.expiresAt - Date.now();
      if (untilEnd !== null && untilEnd < 2 ** 31 - 1) timers.push(setTimeout(() => stream.abort(), Math.max(0, untilEnd)));
      timers.push(setInterval(() => {
        session.stillValid().then((ok) => { if (!ok) stream.abort(); }, () => {});
      }, o.sessionCheckMs ?? 30_000));
    }
    try {
      // Opens the stream at once (the client sees `open`) and sets its reconnect delay.
      write('retry: 3000\n: connected\n\n');
      await closed;
    } finally {
      clearInterval(heartbeat);
      for (const t of timers) clearTimeout(t);
      unsubscribe();
      o.slots?.release();
    }
  }, async () => {});
}
