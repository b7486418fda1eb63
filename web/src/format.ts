// Formatting helpers: times, durations, status pills.
import { h } from './dom';

const pad = (n: number) => String(n).padStart(2, '0');

export function parseTime(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** Local wall-clock time, e.g. "2024-05-01 14:03:07". */
export function fmtTime(iso: string | null | undefined): string {
  const t = parseTime(iso);
  if (t === null) return '—';
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "3 min ago", "in 2 h". */
export function fmtRelative(iso: string | null | undefined, now = Date.now()): string {
  const t = parseTime(iso);
  if (t === null) return '';
  const diff = t - now;
  const abs = Math.abs(diff);
  let v: string;
  if (abs < 45_000) return diff < 0 ? 'just now' : 'in a few seconds';
  if (abs < 3_600_000) v = `${Math.round(abs / 60_000)} min`;
  else if (abs < 86_400_000) v = `${Math.round(abs / 3_600_000)} h`;
  else v = `${Math.round(abs / 86_400_000)} d`;
  return diff < 0 ? `${v} ago` : `in ${v}`;
}

export function fmtDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(Math.floor(s % 60))}s`;
  return `${Math.floor(m / 60)}h ${pad(m % 60)}m`;
}

/** Duration between two timestamps; an open interval counts up to now. */
export function durationMs(start: string | null | undefined, end: string | null | undefined, now = Date.now()): number | null {
  const s = parseTime(start);
  if (s === null) return null;
  const e = parseTime(end) ?? now;
  return Math.max(0, e - s);
}

/**
 * A duration element. When the interval is still open it carries data-live-since,
 * and the ticker in main.ts keeps it counting.
 */
export function durationEl(start: string | null | undefined, end: string | null | undefined, active: boolean): HTMLElement {
  const el = h('span', { class: 'duration' }, fmtDuration(active || end ? durationMs(start, end) : null));
  if (active && start && !end) el.dataset['liveSince'] = start;
  return el;
}

export function timeEl(iso: string | null | undefined, withRelative = true): HTMLElement {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const rel = withRelative ? fmtRelative(iso) : '';
  return h('time', { datetime: iso, title: iso }, fmtTime(iso), rel ? h('span', { class: 'rel' }, ` · ${rel}`) : null);
}

const PILL_TONE: Record<string, string> = {
  succeeded: 'green',
  failed: 'red',
  fresh: 'green',
  stale: 'red',
  never: 'grey',
  running: 'blue',
  queued: 'amber',
  pending: 'grey',
  skipped: 'grey',
  cancelled: 'grey',
};

export function pill(status: string, testid?: string): HTMLElement {
  return h('span', { class: `pill pill-${PILL_TONE[status] ?? 'grey'}`, 'data-testid': testid, 'data-status': status }, status);
}

export function fmtCount(n: number | null | undefined): string {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString('en-US') : '—';
}

export function prettyJson(v: unknown): string {
  try {
    return JSON.stringify(v, null, 2) ?? 'null';
  } catch {
    return String(v);
  }
}
