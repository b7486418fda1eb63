// Server-Sent Events from /api/etl/events with automatic reconnect.
import { eventsUrl } from './api';
import type { LiveEvent } from './types';

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'off';

function parse(data: unknown): LiveEvent | null {
  if (typeof data !== 'string') return null;
  try {
    const v = JSON.parse(data) as Partial<LiveEvent> & Record<string, unknown>;
    if ((v.type === 'run' || v.type === 'step') && typeof v.runId === 'string') return v as LiveEvent;
  } catch {
    /* ignore malformed frames */
  }
  return null;
}

export function connectLive(onEvent: (ev: LiveEvent) => void, onState: (s: LiveState, wasDown: boolean) => void): { reconnect(): void } {
  if (typeof EventSource === 'undefined') {
    onState('off', false);
    return { reconnect() {} };
  }
  let es: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let backoff = 1000;
  let down = false;

  const handle = (e: MessageEvent) => {
    const ev = parse(e.data);
    if (ev) onEvent(ev);
  };

  function open(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    es?.close();
    onState(down ? 'reconnecting' : 'connecting', false);
    const src = new EventSource(eventsUrl(), { withCredentials: true });
    es = src;
    src.onopen = () => {
      backoff = 1000;
      onState('live', down);
      down = false;
    };
    src.onmessage = handle;
    src.addEventListener('run', handle as EventListener);
    src.addEventListener('step', handle as EventListener);
    src.onerror = () => {
      if (es !== src) return;
      down = true;
      onState('reconnecting', false);
      if (src.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. HTTP error): retry ourselves with backoff
        timer = setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 30_000);
      }
    };
  }

  open();
  return { reconnect: open };
}
