// The "no worker alive" banner: runs are accepted and queue in Redis, but nothing runs them.
import { API_BASE, getToken } from './api';
import { h } from './dom';

export interface WorkersSeen {
  alive: number;
  lastSeenAt: string | null;
}

function fmtAgo(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

/** The warning to show, or null while a worker is alive. */
export function workerWarning(w: WorkersSeen, now = Date.now()): string | null {
  if (w.alive > 0) return null;
  const last = w.lastSeenAt ? Date.parse(w.lastSeenAt) : NaN;
  return Number.isFinite(last)
    ? `Runs will queue: no worker seen for ${fmtAgo(now - last)}`
    : 'Runs will queue: no worker has been seen';
}

/** A banner that checks GET /workers now and every `everyMs`; hidden while a worker is alive. */
export function workersBanner(everyMs = 30_000): HTMLElement {
  const el = h('div', { class: 'notice notice-workers', role: 'status', 'data-testid': 'no-worker', hidden: true });
  const check = async () => {
    try {
      const headers: Record<string, string> = { Accept: 'application/json' };
      const token = getToken();
      if (token) headers['Authorization'] = `Bearer ${token}`;
      // Not through api.ts: a 401 here must not open a second login prompt.
      const res = await fetch(`${API_BASE}/workers`, { headers, credentials: 'same-origin' });
      const warning = res.ok ? workerWarning((await res.json()) as WorkersSeen) : null;
      el.hidden = warning === null;
      el.textContent = warning ?? '';
    } catch {
      el.hidden = true;
    }
  };
  void check();
  setInterval(() => void check(), everyMs);
  return el;
}
