// The runs view's history: an inline-SVG chart of the last 50 runs (duration bars, rows
// as a line, failed runs in red, each bar a link to its run) and the tick log
// (fired, skipped with the reason, missed) from GET /pipelines/:id/ticks.
import { api } from './api';
import { h, replaceChildren } from './dom';
import { durationMs, fmtCount, fmtDuration, fmtTime, pill } from './format';
import type { Run, Tick } from './types';
import { errorMessage } from './ui';

const shortId = (id: string) => (id.length > 12 ? `${id.slice(0, 8)}…` : id);
const SVG_NS = 'http://www.w3.org/2000/svg';
const LAST = 50;
const W = 720;
const H = 170;
const PAD = { l: 44, r: 44, t: 10, b: 22 };

function svg(tag: string, attrs: Record<string, string | number>, ...children: (Node | string)[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

const TONE: Record<string, string> = { succeeded: 'var(--green)', failed: 'var(--red)', cancelled: 'var(--grey)', running: 'var(--blue)', queued: 'var(--amber)' };

export function historyChart(runsNewestFirst: Run[]): HTMLElement {
  const runs = runsNewestFirst.slice(0, LAST).reverse();
  if (runs.length === 0) return h('p', { class: 'muted small', 'data-testid': 'run-history-empty' }, 'No runs yet.');
  const dur = runs.map((r) => durationMs(r.startedAt ?? r.createdAt, r.finishedAt) ?? 0);
  const rows = runs.map((r) => r.rows?.out ?? r.rows?.in ?? null);
  const maxDur = Math.max(1, ...dur);
  const maxRows = Math.max(1, ...rows.map((x) => x ?? 0));
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const slot = iw / LAST;
  const bw = Math.max(3, slot * 0.7);
  const x = (i: number) => PAD.l + (LAST - runs.length + i) * slot + (slot - bw) / 2;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'history-chart', role: 'img', 'aria-label': `durations and rows of the last ${runs.length} runs`, 'data-testid': 'run-history' });
  chart.append(
    svg('line', { x1: PAD.l, x2: W - PAD.r, y1: PAD.t + ih, y2: PAD.t + ih, class: 'axis' }),
    svg('text', { x: PAD.l - 6, y: PAD.t + 8, 'text-anchor': 'end', class: 'axis-label' }, fmtDuration(maxDur)),
    svg('text', { x: PAD.l - 6, y: PAD.t + ih, 'text-anchor': 'end', class: 'axis-label' }, '0'),
    svg('text', { x: W - PAD.r + 6, y: PAD.t + 8, class: 'axis-label rows-label' }, `${fmtCount(maxRows)} rows`),
    svg('text', { x: PAD.l, y: H - 6, class: 'axis-label' }, 'older'),
    svg('text', { x: W - PAD.r, y: H - 6, 'text-anchor': 'end', class: 'axis-label' }, 'newest'),
  );
  runs.forEach((r, i) => {
    const bh = Math.max(2, (dur[i]! / maxDur) * ih);
    const title = `${shortId(r.id)} · ${r.status} · ${fmtTime(r.startedAt ?? r.createdAt)} · ${fmtDuration(dur[i]!)} · ${rows[i] === null ? 'no rows' : `${fmtCount(rows[i])} rows`}`;
    const bar = svg('rect', { x: x(i), y: PAD.t + ih - bh, width: bw, height: bh, rx: 1.5, fill: TONE[r.status] ?? 'var(--grey)' });
    // The whole column is the link, not only the bar: a quick run's bar is 2 px tall.
    const hit = svg('rect', { x: x(i), y: PAD.t, width: bw, height: ih, fill: 'transparent', 'pointer-events': 'all', class: 'hit' });
    const link = svg('a', { href: `#/runs/${encodeURIComponent(r.id)}`, 'data-testid': `history-bar-${r.id}`, 'data-status': r.status, class: 'history-bar' },
      svg('title', {}, title), hit, bar);
    if (r.status === 'failed') link.append(svg('text', { x: x(i) + bw / 2, y: PAD.t + ih - bh - 3, 'text-anchor': 'middle', class: 'fail-mark' }, '✕'));
    chart.append(link);
  });
  const pts = runs.map((_, i) => (rows[i] === null ? null : `${(x(i) + bw / 2).toFixed(1)},${(PAD.t + ih - (rows[i]! / maxRows) * ih).toFixed(1)}`)).filter(Boolean);
  // The rows line and its dots sit over the columns: clicks go through them to the run.
  if (pts.length > 1) chart.append(svg('polyline', { points: pts.join(' '), class: 'rows-line', 'data-testid': 'history-rows-line', 'pointer-events': 'none' }));
  for (const p of pts) {
    const [cx, cy] = p!.split(',');
    chart.append(svg('circle', { cx: cx!, cy: cy!, r: 2.2, class: 'rows-dot', 'pointer-events': 'none' }));
  }
  const legend = h('div', { class: 'legend small muted' },
    h('span', { class: 'key key-ok' }, 'succeeded'), h('span', { class: 'key key-failed' }, 'failed ✕'), h('span', { class: 'key key-rows' }, 'rows out'),
    ' · bar height = duration; click a bar to open its run');
  const wrap = h('div', { class: 'history' });
  wrap.append(chart, legend);
  return wrap;
}

const OUTCOME_LABEL: Record<string, string> = { fired: 'fired', skipped_overlap: 'skipped', skipped_disabled: 'skipped', missed: 'missed', pending: 'pending' };

export function tickLog(ticks: Tick[]): HTMLElement {
  if (ticks.length === 0) return h('p', { class: 'muted small', 'data-testid': 'tick-log-empty' }, 'No scheduled ticks recorded (the pipeline is disabled or has not been due yet).');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table table-compact table-cards', 'data-testid': 'tick-log' },
    h('thead', null, h('tr', null, ['Scheduled for', 'Outcome', 'Run', 'Lag', 'Why'].map((t) => h('th', null, t)))),
    h('tbody', null, ticks.map((t) => h('tr', { 'data-testid': 'tick-row', 'data-outcome': t.outcome },
      h('td', { 'data-label': 'Scheduled for', class: 'small' }, fmtTime(t.scheduledFor), t.catchUp ? h('span', { class: 'muted' }, ' (catch-up)') : null),
      h('td', { 'data-label': 'Outcome' }, pill(OUTCOME_LABEL[t.outcome] ?? t.outcome)),
      h('td', { 'data-label': 'Run' }, t.runId ? h('a', { class: 'mono', href: `#/runs/${encodeURIComponent(t.runId)}` }, shortId(t.runId)) : h('span', { class: 'muted' }, '—')),
      h('td', { 'data-label': 'Lag', class: 'num' }, t.lagMs === null ? '—' : fmtDuration(t.lagMs)),
      h('td', { 'data-label': 'Why', class: 'small' }, t.detail ?? (t.outcome === 'skipped_disabled' ? 'pipeline disabled' : t.outcome === 'fired' ? '' : '—')),
    )))));
}

/** Both panels of a pipeline's runs view, refreshed with the view. */
export function historyPanels(pipelineId: string): { el: HTMLElement; refresh(): Promise<void> } {
  const chartBox = h('div', null, h('p', { class: 'muted small' }, 'Loading history…'));
  const ticksBox = h('div', null, h('p', { class: 'muted small' }, 'Loading tick log…'));
  const el = h('div', { class: 'history-panels' },
    h('section', { class: 'card' }, h('h2', { class: 'card-title' }, `Last ${LAST} runs`), chartBox),
    h('details', { class: 'card tick-card', 'data-testid': 'tick-log-section' },
      h('summary', null, h('strong', null, 'Tick log'), h('span', { class: 'muted small' }, ' — scheduled ticks: fired, skipped (and why), missed')), ticksBox));
  return {
    el,
    async refresh() {
      const [runs, ticks] = await Promise.allSettled([api.listRuns(pipelineId, { limit: LAST }), api.listTicks(pipelineId)]);
      replaceChildren(chartBox, runs.status === 'fulfilled' ? historyChart(runs.value.runs) : h('p', { class: 'text-red small' }, errorMessage(runs.reason)));
      replaceChildren(ticksBox, ticks.status === 'fulfilled' ? tickLog(ticks.value) : h('p', { class: 'text-red small' }, errorMessage(ticks.reason)));
    },
  };
}
