// Server-Sent Events from /api/etl/events with automatic reconnect.
import { eventsUrl } from './api';
import type { LiveEvent, ProgressEvent } from './types';

/** Progress events go to whoever shows them (the run view), not to the view refresher:
 *  they change nothing stored, so they must not trigger a re-fetch every second. */
export const PROGRESS_EVENT = 'etl:progress';

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'off';

function parse(data: unknown): LiveEvent | null {
  if (typeof data !== 'string') return null;
  try {
    const v = JSON.parse(data) as Partial<LiveEvent> & Record<string, unknown>;
    if ((v as { type?: unknown }).type === 'progress' && typeof v['runId'] === 'string') {
      window.dispatchEvent(new CustomEvent<ProgressEvent>(PROGRESS_EVENT, { detail: v as unknown as ProgressEvent }));
      return null;
    }
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

  let opening = 0;
  async function open(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = null;
    es?.close();
    es = null;
    onState(down ? 'reconnecting' : 'connecting', false);
    const mine = ++opening;
    let url: string;
    try {
      url = await eventsUrl();
    } catch {
      down = true;
      onState('reconnecting', false);
      timer = setTimeout(() => void open(), backoff);
      backoff = Math.min(backoff * 2, 30_000);
      return;
    }
    if (mine !== opening) return; // a newer open() took over
    const src = new EventSource(url, { withCredentials: true });
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
      // The browser gave up (e.g. HTTP error), or would retry with a spent ticket: retry
      // ourselves with backoff (and a fresh ticket).
      if (src.readyState === EventSource.CLOSED || url.includes('ticket=')) {
        src.close();
        timer = setTimeout(() => void open(), backoff);
        backoff = Math.min(backoff * 2, 30_000);
      }
    };
  }

  void open();
  return { reconnect: () => void open() };
}
