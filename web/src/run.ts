// View #/runs/<runId> : the run drilldown (header, actions, step timeline).
import { actorLabel, guard } from './access';
import { api, ApiError } from './api';
import { h, replaceChildren } from './dom';
import { durationEl, fmtCount, pill, timeEl } from './format';
import { shortId } from './runs';
import { PROGRESS_EVENT } from './live';
import { updateProgress } from './progress';
import { stepsTimeline, type StepCtx } from './steps';
import type { LiveEvent, ProgressEvent, Run, Step, View } from './types';
import { confirmAndRun, errorBlock, errorMessage, loadingBlock } from './ui';

function fact(label: string, value: Node | string): HTMLElement {
  return h('div', { class: 'fact' }, h('dt', null, label), h('dd', null, value));
}

/** The timeline's step actions: retry a failed step, or rerun from a step as a new run. */
function stepCtx(runId: string, after: () => void, alive: () => boolean): StepCtx {
  return {
    open: new Set<string>(),
    progress: new Map<string, ProgressEvent>(),
    retry: (step: Step) => void confirmAndRun(
      { title: `Retry step "${step.key}"?`, message: 'Runs this failed step again; the run then continues with the steps after it.', okLabel: 'Retry step' },
      () => api.retryStep(runId, step.key),
      () => [`Step ${step.key} queued for retry.`],
    ).then(after),
    rerunFrom: (step: Step) => void confirmAndRun(
      { title: `Rerun from "${step.key}"?`, message: `Starts a new run that reuses this run's checkpoints before "${step.key}" and executes "${step.key}" and every step after it.`, okLabel: 'Start rerun' },
      () => api.rerun(runId, step.key),
      (r) => [`Rerun started as ${shortId(r.runId)}.`],
    ).then((r) => {
      if (r && alive()) location.hash = `#/runs/${encodeURIComponent(r.runId)}`;
    }),
  };
}

/** Resume or Cancel, as the run's status allows; `after` refreshes the view. */
function runActions(r: Run, after: () => void): HTMLElement {
  const box = h('div', { class: 'toolbar' });
  if (r.status === 'failed' || r.status === 'cancelled') {
    box.appendChild(guard(h('button', {
      type: 'button', class: 'btn btn-primary', 'data-testid': 'resume-run',
      onclick: () => void confirmAndRun(
        { title: 'Resume this run?', message: 'Re-runs every step that has not succeeded; succeeded steps are reused, not executed again.', okLabel: 'Resume' },
        () => api.resume(r.id),
        () => ['Run resumed.'],
      ).then(after),
    }, 'Resume')));
  }
  if (r.status === 'queued' || r.status === 'running') {
    box.appendChild(guard(h('button', {
      type: 'button', class: 'btn btn-danger', 'data-testid': 'cancel-run',
      onclick: () => void confirmAndRun(
        { title: 'Cancel this run?', message: 'Stops the run; the running step is aborted and the remaining steps are marked cancelled.', okLabel: 'Cancel run', danger: true },
        () => api.cancel(r.id),
        () => ['Cancellation requested.'],
      ).then(after),
    }, 'Cancel')));
  }
  return box;
}

/** The run's header card: title, actions, facts, and its error. */
function runHeader(r: Run, after: () => void): HTMLElement {
  const pHref = `#/pipelines/${encodeURIComponent(r.pipelineId)}`;
  const active = r.status === 'running' || r.status === 'queued';
  return h('section', { class: 'card run-head', 'data-testid': 'run-header' },
    h('div', { class: 'view-head' },
      h('h1', null, 'Run ', h('span', { class: 'mono', title: r.id }, shortId(r.id)), ' ', pill(r.status, 'run-status')),
      runActions(r, after)),
    h('dl', { class: 'facts' },
      fact('Pipeline', h('a', { href: pHref, class: 'mono' }, r.pipelineId)),
      fact('Trigger', r.trigger),
      fact('Triggered by', h('span', { 'data-testid': 'run-triggered-by' }, actorLabel(r.triggeredBy))),
      fact('Created', timeEl(r.createdAt)),
      fact('Started', timeEl(r.startedAt)),
      fact('Finished', timeEl(r.finishedAt)),
      fact('Duration', durationEl(r.startedAt, r.finishedAt, active)),
      fact('Rows in / out', r.rows ? `${fmtCount(r.rows.in)} / ${fmtCount(r.rows.out)}` : '—'),
      r.parentRunId
        ? fact('Parent run', h('a', { class: 'mono', href: `#/runs/${encodeURIComponent(r.parentRunId)}`, 'data-testid': 'parent-run-link', title: r.parentRunId }, shortId(r.parentRunId)))
        : null,
      fact('Run id', h('span', { class: 'mono small break' }, r.id)),
    ),
    r.error ? h('pre', { class: 'error-text', 'data-testid': 'run-error' }, r.error) : null,
  );
}

/** Pipelines / <pipeline> / run <id>. */
function runCrumbs(r: Run): (Node | string)[] {
  const pHref = `#/pipelines/${encodeURIComponent(r.pipelineId)}`;
  return [h('a', { href: '#/' }, 'Pipelines'), ' / ', h('a', { href: pHref, class: 'mono' }, r.pipelineId), ' / ', h('span', { class: 'mono' }, `run ${shortId(r.id)}`)];
}

function runNotFound(runId: string): HTMLElement {
  return h('div', { class: 'state state-error', 'data-testid': 'error', role: 'alert' },
    h('strong', null, 'Run not found'),
    h('p', null, `There is no run with id "${runId}". `, h('a', { href: '#/' }, 'Back to pipelines')),
  );
}

export function runView(root: HTMLElement, runId: string): View {
  const crumbs = h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, 'Pipelines'), ' / … / ', h('span', { class: 'mono' }, `run ${shortId(runId)}`));
  const notice = h('div', { class: 'notice', hidden: true });
  const body = h('div', null, loadingBlock('Loading run…'));
  replaceChildren(root, crumbs, notice, body);

  let alive = true;
  let seq = 0;
  let run: Run | null = null;

  const after = () => void refresh();
  const ctx = stepCtx(runId, after, () => alive);

  function render(r: Run): void {
    replaceChildren(crumbs, runCrumbs(r));
    replaceChildren(body, runHeader(r, after), h('h2', null, 'Steps'), stepsTimeline(r, ctx));
  }

  async function refresh(): Promise<void> {
    const my = ++seq;
    try {
      const r = await api.getRun(runId);
      if (!alive || my !== seq) return;
      run = r;
      notice.hidden = true;
      render(r);
    } catch (err) {
      if (!alive || my !== seq) return;
      if (run && !(err instanceof ApiError && err.status === 404)) {
        notice.hidden = false;
        notice.textContent = `Could not refresh: ${errorMessage(err)}`;
        return;
      }
      run = null;
      if (err instanceof ApiError && err.status === 404) {
        replaceChildren(body, runNotFound(runId));
      } else {
        replaceChildren(body, errorBlock(err, () => { replaceChildren(body, loadingBlock('Loading run…')); void refresh(); }));
      }
    }
  }

  // Live progress updates the bar in place: no re-fetch, no re-render.
  const onProgress = (e: Event) => {
    const p = (e as CustomEvent<ProgressEvent>).detail;
    if (p.runId !== runId) return;
    ctx.progress.set(p.step, p);
    const bar = root.querySelector<HTMLElement>(`[data-testid="progress-${CSS.escape(p.step)}"]`);
    if (bar) updateProgress(bar, p);
  };
  window.addEventListener(PROGRESS_EVENT, onProgress);

  void refresh();
  return {
    refresh,
    onEvent: (ev: LiveEvent) => ev.runId === runId || (run !== null && ev.type === 'run' && ev.runId === run.parentRunId),
    dispose: () => {
      alive = false;
      window.removeEventListener(PROGRESS_EVENT, onProgress);
    },
  };
}
