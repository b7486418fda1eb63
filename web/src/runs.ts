// View #/pipelines/<id> : runs of one pipeline, newest first, filter + "Load more".
import { actorLabel, guard } from './access';
import { api } from './api';
import { h, replaceChildren } from './dom';
import { durationEl, fmtCount, pill, timeEl } from './format';
import { historyPanels } from './history';
import { RUN_STATUSES, type LiveEvent, type Pipeline, type Run, type View } from './types';
import { confirmAndRun, emptyBlock, errorBlock, errorMessage, loadingBlock, setBusy } from './ui';

const PAGE = 20;

export function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

function firstLine(s: string | null | undefined, max = 90): string {
  if (!s) return '';
  const line = s.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

function runRow(r: Run): HTMLTableRowElement {
  const href = `#/runs/${encodeURIComponent(r.id)}`;
  const active = r.status === 'running' || r.status === 'queued';
  return h(
    'tr',
    { 'data-testid': `run-row-${r.id}`, 'data-run-id': r.id },
    h('td', { 'data-label': 'Run' }, h('a', { class: 'mono', href, title: r.id }, shortId(r.id))),
    h('td', { 'data-label': 'Status' }, h('a', { href, class: 'pill-link' }, pill(r.status))),
    h('td', { 'data-label': 'Trigger' }, r.trigger, r.triggeredBy ? h('div', { class: 'small muted', 'data-testid': `triggered-by-${r.id}` }, actorLabel(r.triggeredBy)) : null),
    h('td', { 'data-label': 'Started', class: 'small' }, timeEl(r.startedAt ?? r.createdAt)),
    h('td', { 'data-label': 'Duration', class: 'num' }, durationEl(r.startedAt, r.finishedAt, active)),
    h('td', { 'data-label': 'Rows in / out', class: 'num' }, r.rows ? `${fmtCount(r.rows.in)} / ${fmtCount(r.rows.out)}` : '—'),
    h('td', { 'data-label': 'Error', class: 'cell-error' }, r.error ? h('span', { class: 'text-red', title: r.error }, firstLine(r.error)) : null),
  );
}

function statusFilter(): HTMLSelectElement {
  return h('select', { class: 'input', 'data-testid': 'status-filter', 'aria-label': 'Filter by status' },
    h('option', { value: '' }, 'All statuses'), RUN_STATUSES.map((s) => h('option', { value: s }, s)));
}

/** The view's frame: crumbs, title and toolbar, then the parts filled in as data arrives. */
function runsLayout(root: HTMLElement, pipelineId: string) {
  const parts = {
    head: h('div', { class: 'pipeline-meta' }),
    filter: statusFilter(),
    runBtn: guard(h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': `run-now-${pipelineId}` }, 'Run now')),
    notice: h('div', { class: 'notice', hidden: true }),
    body: h('div', null, loadingBlock()),
    more: h('button', { type: 'button', class: 'btn', 'data-testid': 'load-more', hidden: true }, 'Load more'),
    history: historyPanels(pipelineId),
  };
  const { head, filter, runBtn, notice, body, more, history } = parts;
  replaceChildren(
    root,
    h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, 'Pipelines'), ' / ', h('span', { class: 'mono' }, pipelineId)),
    h('div', { class: 'view-head' }, h('h1', { class: 'mono' }, pipelineId), h('div', { class: 'toolbar' }, filter, runBtn)),
    head, history.el, notice, body, h('div', { class: 'more' }, more),
  );
  return parts;
}

/** Sandbox badge, description, schedule and whether it is enabled. */
function pipelineFacts(p: Pipeline): (HTMLElement | null)[] {
  return [
    p.sandbox ? h('span', { class: 'badge badge-sandbox', 'data-testid': `sandbox-${p.id}` }, 'sandbox') : null,
    p.description ? h('span', { class: 'muted' }, p.description) : null,
    h('span', { class: 'muted small' }, h('span', { class: 'mono' }, p.cron), ` · ${p.timezone} · ${p.enabled ? 'enabled' : 'paused'}`),
  ];
}

function loadPipelineFacts(pipelineId: string, head: HTMLElement, alive: () => boolean): void {
  api.getPipeline(pipelineId).then((p) => { if (alive()) replaceChildren(head, pipelineFacts(p)); }, (err) => {
    if (alive()) replaceChildren(head, h('span', { class: 'text-red small' }, `Pipeline: ${errorMessage(err)}`));
  });
}

function noRuns(status: string): HTMLElement {
  return emptyBlock(status ? `No ${status} runs` : 'No runs yet', status ? 'Try another status filter.' : 'Use "Run now" to start one.');
}

function runsTable(runs: Run[]): HTMLElement {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table table-cards runs', 'data-testid': 'runs-table' },
    h('thead', null, h('tr', null, ['Run', 'Status', 'Trigger', 'Started', 'Duration', 'Rows in / out', 'Error'].map((t) => h('th', null, t)))),
    h('tbody', null, runs.map(runRow))));
}

/** A fresh first page over pages already loaded: the first page replaces or prepends. */
function mergeFirstPage(runs: Run[], firstPage: Run[]): Run[] {
  const fresh = new Set(firstPage.map((r) => r.id));
  return [...firstPage, ...runs.filter((r) => !fresh.has(r.id) && !isNewer(r, firstPage))];
}

/** A later page after the runs loaded so far, without the ones already shown. */
function appendPage(runs: Run[], page: Run[]): Run[] {
  const have = new Set(runs.map((r) => r.id));
  return [...runs, ...page.filter((r) => !have.has(r.id))];
}

// a run missing from a fresh first page but newer than its last entry left the filter
function isNewer(r: Run, firstPage: Run[]): boolean {
  const last = firstPage[firstPage.length - 1];
  return firstPage.length >= PAGE && !!last && r.createdAt > last.createdAt;
}

function showNotice(notice: HTMLElement, text: string): void {
  notice.hidden = false;
  notice.textContent = text;
}

async function runNow(pipelineId: string, runBtn: HTMLButtonElement, refresh: () => Promise<void>): Promise<void> {
  setBusy(runBtn, true);
  const r = await confirmAndRun(
    { title: `Run ${pipelineId} now?`, message: `Starts a manual run of ${pipelineId} immediately.`, okLabel: 'Run now' },
    () => api.trigger(pipelineId),
    (res) => [`Run started. `, h('a', { href: `#/runs/${encodeURIComponent(res.runId)}` }, 'Open run')],
  );
  setBusy(runBtn, false);
  if (r) void refresh();
}

export function runsView(root: HTMLElement, pipelineId: string): View {
  const { head, filter, runBtn, notice, body, more, history } = runsLayout(root, pipelineId);

  let runs: Run[] = [];
  let cursor: string | null = null;
  let loadedExtra = false; // pages beyond the first were loaded
  let alive = true;
  let seq = 0;
  let loaded = false;

  function render(): void {
    more.hidden = !cursor;
    replaceChildren(body, runs.length === 0 ? noRuns(filter.value) : runsTable(runs));
  }

  async function refresh(): Promise<void> {
    const my = ++seq;
    void history.refresh();
    try {
      const page = await api.listRuns(pipelineId, { limit: PAGE, status: filter.value || null });
      if (!alive || my !== seq) return;
      if (loadedExtra) {
        runs = mergeFirstPage(runs, page.runs);
      } else {
        runs = page.runs;
        cursor = page.nextCursor;
      }
      loaded = true;
      notice.hidden = true;
      render();
    } catch (err) {
      if (!alive || my !== seq) return;
      if (loaded) {
        showNotice(notice, `Could not refresh: ${errorMessage(err)}`);
      } else {
        replaceChildren(body, errorBlock(err, () => { replaceChildren(body, loadingBlock()); void refresh(); }));
      }
    }
  }

  async function loadMore() {
    if (!cursor) return;
    setBusy(more, true);
    try {
      const page = await api.listRuns(pipelineId, { limit: PAGE, cursor, status: filter.value || null });
      if (!alive) return;
      runs = appendPage(runs, page.runs);
      cursor = page.nextCursor;
      loadedExtra = true;
      render();
    } catch (err) {
      showNotice(notice, `Could not load more: ${errorMessage(err)}`);
    } finally {
      setBusy(more, false);
    }
  }
  more.addEventListener('click', () => void loadMore()); // loadMore reports its own errors

  filter.addEventListener('change', () => {
    runs = [];
    cursor = null;
    loadedExtra = false;
    loaded = false;
    more.hidden = true;
    replaceChildren(body, loadingBlock());
    void refresh();
  });

  runBtn.addEventListener('click', () => void runNow(pipelineId, runBtn, refresh)); // confirmAndRun reports its own errors

  loadPipelineFacts(pipelineId, head, () => alive);
  void refresh();

  return {
    refresh,
    onEvent: (ev: LiveEvent) => ev.pipelineId === pipelineId,
    dispose: () => { alive = false; },
  };
}
