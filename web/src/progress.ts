// The live progress bar of a running step (SSE `progress`): rows, rows/s, and an ETA
// when the source knows its total.
import { h, replaceChildren } from './dom';
import { fmtCount, fmtDuration } from './format';
import type { ProgressEvent } from './types';

export function progressText(p: ProgressEvent): string {
  const parts = [p.rowsTotal ? `${fmtCount(p.rowsDone)} / ${fmtCount(p.rowsTotal)} rows` : `${fmtCount(p.rowsDone)} rows`];
  if (p.pagesDone !== undefined) parts.push(`${fmtCount(p.pagesDone)} pages`);
  parts.push(`${fmtCount(p.rowsPerSec)} rows/s`);
  if (p.rowsTotal && p.rowsPerSec > 0 && p.rowsDone < p.rowsTotal) {
    parts.push(`ETA ${fmtDuration(((p.rowsTotal - p.rowsDone) / p.rowsPerSec) * 1000)}`);
  }
  return parts.join(' · ');
}

/** An empty bar for a running step; `updateProgress` fills it. */
export function progressBar(key: string, last?: ProgressEvent): HTMLElement {
  const el = h('div', { class: 'progress', 'data-testid': `progress-${key}`, role: 'progressbar', 'aria-label': `progress of ${key}` },
    h('div', { class: 'progress-track' }, h('div', { class: 'progress-fill' })),
    h('div', { class: 'progress-text small muted', 'data-testid': `progress-text-${key}` }, 'waiting for progress…'));
  if (last) updateProgress(el, last);
  return el;
}

export function updateProgress(el: HTMLElement, p: ProgressEvent): void {
  const fill = el.querySelector<HTMLElement>('.progress-fill');
  const text = el.querySelector<HTMLElement>('.progress-text');
  const known = !!p.rowsTotal && p.rowsTotal > 0;
  const pct = known ? Math.min(100, (p.rowsDone / p.rowsTotal!) * 100) : null;
  el.classList.toggle('progress-indeterminate', !known);
  if (fill) fill.style.width = pct === null ? '' : `${pct.toFixed(1)}%`;
  el.dataset['rowsDone'] = String(p.rowsDone);
  if (pct !== null) el.setAttribute('aria-valuenow', pct.toFixed(0));
  if (text) replaceChildren(text, progressText(p));
}
