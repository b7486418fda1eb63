// The Datasets view: every published dataset with its age, rows, last run and freshness.
import { api } from './api';
import { h, replaceChildren } from './dom';
import { fmtCount, fmtDuration, pill, timeEl } from './format';
import type { Dataset, LiveEvent, View } from './types';
import { emptyBlock, errorBlock, loadingBlock } from './ui';

const age = (s: number | null) => (s === null ? '—' : fmtDuration(s * 1000));

function datasetRow(d: Dataset): HTMLElement {
  return h('tr', { 'data-testid': `dataset-row-${d.dataset}`, 'data-status': d.status },
    h('td', { 'data-label': 'Dataset' }, h('div', { class: 'mono' }, d.dataset), h('div', { class: 'muted small mono' }, d.key)),
    h('td', { 'data-label': 'Kind', class: 'small' }, d.kind),
    h('td', { 'data-label': 'Pipeline' }, h('a', { class: 'mono', href: `#/pipelines/${encodeURIComponent(d.pipelineId)}` }, d.pipelineId)),
    h('td', { 'data-label': 'Rows', class: 'num' }, fmtCount(d.rows)),
    h('td', { 'data-label': 'Updated', class: 'small' }, timeEl(d.updatedAt)),
    h('td', { 'data-label': 'Age', class: 'num', 'data-testid': `dataset-age-${d.dataset}` }, age(d.ageSeconds), h('div', { class: 'muted small' }, `max ${age(d.maxAgeSeconds)}`)),
    h('td', { 'data-label': 'Last run' }, d.runId
      ? h('a', { class: 'mono small', href: `#/runs/${encodeURIComponent(d.runId)}`, 'data-testid': `dataset-run-${d.dataset}` }, d.runId.slice(0, 8))
      : h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Status' }, pill(d.status, `dataset-status-${d.dataset}`),
      d.reason ? h('div', { class: 'small muted dataset-reason', 'data-testid': `dataset-reason-${d.dataset}` }, d.reason) : null),
  );
}

export function datasetsView(root: HTMLElement): View {
  const body = h('div', null, loadingBlock());
  replaceChildren(root, h('div', { class: 'view-head' }, h('h1', null, 'Datasets'),
    h('p', { class: 'muted small' }, 'What the marketing site reads. Stale: older than its max age (twice the schedule\'s longest gap, or config freshness.maxAgeSeconds).')), body);
  let alive = true;
  async function refresh(): Promise<void> {
    try {
      const list = await api.datasets();
      if (!alive) return;
      if (list.length === 0) {
        replaceChildren(body, emptyBlock('No datasets', 'No pipeline publishes a dataset.'));
        return;
      }
      replaceChildren(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table table-cards', 'data-testid': 'datasets-table' },
        h('thead', null, h('tr', null, ['Dataset', 'Kind', 'Pipeline', 'Rows', 'Updated', 'Age', 'Last run', 'Status'].map((t) => h('th', null, t)))),
        h('tbody', null, list.map(datasetRow)))));
    } catch (err) {
      if (alive) replaceChildren(body, errorBlock(err, () => void refresh()));
    }
  }
  void refresh();
  return { refresh, onEvent: (ev: LiveEvent) => ev.type === 'run', dispose: () => { alive = false; } };
}
