// The step timeline of the run drilldown.
import { guard } from './access';
import { api } from './api';
import { h, replaceChildren } from './dom';
import { durationEl, durationMs, fmtCount, parseTime, pill, prettyJson, timeEl } from './format';
import { fillEventLog } from './events-log';
import { progressBar } from './progress';
import type { Attempt, ProgressEvent, Reject, Run, Step } from './types';
import { errorMessage } from './ui';

export interface StepCtx {
  /** keys of steps whose <details> sections are open, kept across refreshes */
  open: Set<string>;
  /** The latest live progress per step key, kept across re-renders. */
  progress: Map<string, ProgressEvent>;
  retry(step: Step): void;
  rerunFrom(step: Step): void;
}

function pagesInfo(cp: unknown): string | null {
  if (!cp || typeof cp !== 'object') return null;
  const c = cp as Record<string, unknown>;
  const parts: string[] = [];
  if (typeof c['pagesDone'] === 'number') parts.push(`${fmtCount(c['pagesDone'])} pages done`);
  if (typeof c['nextStartIndex'] === 'number') parts.push(`next startindex ${fmtCount(c['nextStartIndex'])}`);
  return parts.length ? parts.join(' · ') : null;
}

function attemptsTable(list: Attempt[]): HTMLElement {
  if (list.length === 0) return h('p', { class: 'muted small' }, 'No attempts recorded.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table table-compact table-cards' },
    h('thead', null, h('tr', null, ['#', 'Status', 'Started', 'Duration', 'Error'].map((t) => h('th', null, t)))),
    h('tbody', null, list.map((a) => h('tr', null,
      h('td', { 'data-label': 'Attempt' }, String(a.attempt)),
      h('td', { 'data-label': 'Status' }, pill(a.status)),
      h('td', { 'data-label': 'Started', class: 'small' }, timeEl(a.startedAt, false)),
      h('td', { 'data-label': 'Duration', class: 'num' }, durationEl(a.startedAt, a.finishedAt, a.status === 'running')),
      h('td', { 'data-label': 'Error' }, a.error ? h('pre', { class: 'error-text' }, a.error) : h('span', { class: 'muted' }, '—')),
    )))));
}

function rejectsTable(list: Reject[], total: number): HTMLElement {
  const more = total > list.length ? h('p', { class: 'muted small' }, `Showing the first ${list.length} of ${fmtCount(total)} rejected rows.`) : null;
  return h('div', null, more, h('div', { class: 'table-wrap' }, h('table', { class: 'table table-compact table-cards', 'data-testid': 'rejects-table' },
    h('thead', null, h('tr', null, ['Row', 'Page', 'Dataset', 'Field', 'Reason', 'Value'].map((t) => h('th', null, t)))),
    h('tbody', null, list.map((r) => h('tr', { 'data-testid': `reject-row-${r.row}` },
      h('td', { 'data-label': 'Row', class: 'num' }, fmtCount(r.row)),
      h('td', { 'data-label': 'Page', class: 'num' }, r.page === undefined ? '—' : String(r.page)),
      h('td', { 'data-label': 'Dataset', class: 'mono small' }, r.dataset),
      h('td', { 'data-label': 'Field', class: 'mono small' }, r.path ?? '—'),
      h('td', { 'data-label': 'Reason', class: 'small' }, r.reason),
      h('td', { 'data-label': 'Value' }, h('pre', { class: 'json reject-value' }, r.value)),
    ))))));
}

function section(ctx: StepCtx, id: string, summary: string, fill: (box: HTMLElement) => void, testid: string): HTMLElement {
  const box = h('div', { class: 'details-body' });
  const d = h('details', { 'data-testid': testid }, h('summary', null, summary), box);
  d.open = ctx.open.has(id);
  if (d.open) fill(box);
  d.addEventListener('toggle', () => {
    if (d.open) {
      ctx.open.add(id);
      fill(box);
    } else ctx.open.delete(id);
  });
  return d;
}

function timeBar(step: Step, t0: number, span: number): HTMLElement {
  const bar = h('div', { class: 'bar', 'aria-hidden': 'true' });
  const s = parseTime(step.startedAt);
  if (s !== null && span > 0) {
    const d = durationMs(step.startedAt, step.finishedAt) ?? 0;
    const fill = h('div', { class: `bar-fill tone-${step.status}` });
    fill.style.left = `${Math.min(100, ((s - t0) / span) * 100).toFixed(2)}%`;
    fill.style.width = `max(3px, ${Math.min(100, (d / span) * 100).toFixed(2)}%)`;
    bar.appendChild(fill);
  }
  return bar;
}

function stepItem(run: Run, step: Step, i: number, ctx: StepCtx, t0: number, span: number): HTMLElement {
  const k = step.key;
  const pages = pagesInfo(step.checkpoint);
  const actions = h('div', { class: 'step-actions' });
  if (step.status === 'failed') {
    actions.appendChild(guard(h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': `retry-step-${k}`, onclick: () => ctx.retry(step) }, 'Retry step')));
  }
  actions.appendChild(guard(h('button', { type: 'button', class: 'btn btn-small', 'data-testid': `rerun-from-${k}`, onclick: () => ctx.rerunFrom(step) }, 'Rerun from here')));

  const attemptsFill = (box: HTMLElement) => {
    if (step.attemptsHistory) {
      replaceChildren(box, attemptsTable(step.attemptsHistory));
      return;
    }
    replaceChildren(box, h('p', { class: 'muted small' }, 'Loading attempts…'));
    api.getStep(run.id, k).then(
      (s) => replaceChildren(box, attemptsTable(s.attemptsHistory ?? [])),
      (err) => replaceChildren(box, h('p', { class: 'text-red small' }, errorMessage(err))),
    );
  };

  return h(
    'li',
    { class: `step step-${step.status}`, 'data-testid': `step-${k}`, 'data-step': k },
    h('span', { class: 'step-dot', 'aria-hidden': 'true' }),
    h('div', { class: 'step-card' },
      h('div', { class: 'step-head' },
        h('span', { class: 'step-pos muted' }, `${i + 1}.`),
        h('strong', { class: 'mono step-key' }, k),
        pill(step.status, `step-status-${k}`),
        h('span', { class: 'muted small', 'data-testid': `step-attempts-${k}` }, `${step.attempts} attempt${step.attempts === 1 ? '' : 's'}`),
        actions,
      ),
      h('div', { class: 'step-meta small' },
        h('span', null, 'Started ', timeEl(step.startedAt, false)),
        h('span', null, 'Took ', durationEl(step.startedAt, step.finishedAt, step.status === 'running')),
        h('span', null, `Rows in ${fmtCount(step.rowsIn)} · out ${fmtCount(step.rowsOut)}`),
        step.rowsRejected ? h('span', { class: 'text-red', 'data-testid': `step-rejected-${k}` }, `${fmtCount(step.rowsRejected)} rejected`) : null,
        pages ? h('span', { 'data-testid': `step-pages-${k}` }, pages) : null,
      ),
      timeBar(step, t0, span),
      step.status === 'running' ? progressBar(k, ctx.progress.get(k)) : null,
      step.error ? h('pre', { class: 'error-text', 'data-testid': `step-error-${k}` }, step.error) : null,
      h('div', { class: 'step-details' },
        section(ctx, `a:${k}`, `Attempts history (${step.attemptsHistory?.length ?? step.attempts})`, attemptsFill, `attempts-${k}`),
        step.attempts > 0 ? section(ctx, `e:${k}`, 'Event log', (box) => fillEventLog(box, run.id, k), `event-log-${k}`) : null,
        step.rowsRejected
          ? section(ctx, `r:${k}`, `Rejected rows (${fmtCount(step.rowsRejected)})`, (box) => {
            replaceChildren(box, h('p', { class: 'muted small' }, 'Loading rejected rows…'));
            api.rejects(run.id, k).then(
              (r) => replaceChildren(box, rejectsTable(r.rejects, r.rowsRejected)),
              (err) => replaceChildren(box, h('p', { class: 'text-red small' }, errorMessage(err))),
            );
          }, `rejects-${k}`)
          : null,
        step.checkpoint !== null && step.checkpoint !== undefined
          ? section(ctx, `c:${k}`, 'Checkpoint', (box) => replaceChildren(box, h('pre', { class: 'json' }, prettyJson(step.checkpoint))), `checkpoint-${k}`)
          : null,
      ),
    ),
  );
}

export function stepsTimeline(run: Run, ctx: StepCtx): HTMLElement {
  const steps = [...(run.steps ?? [])].sort((a, b) => a.position - b.position);
  if (steps.length === 0) return h('p', { class: 'muted' }, 'This run has no steps yet.');
  const starts = steps.map((s) => parseTime(s.startedAt)).filter((t): t is number => t !== null);
  const ends = steps.map((s) => parseTime(s.finishedAt) ?? (s.startedAt ? Date.now() : null)).filter((t): t is number => t !== null);
  const t0 = Math.min(parseTime(run.startedAt) ?? Infinity, ...starts);
  const t1 = Math.max(parseTime(run.finishedAt) ?? -Infinity, ...ends);
  const span = Number.isFinite(t0) && Number.isFinite(t1) ? Math.max(1, t1 - t0) : 0;
  return h('ol', { class: 'timeline', 'data-testid': 'steps' }, steps.map((s, i) => stepItem(run, s, i, ctx, t0, span)));
}
