// View #/ : the pipelines table with inline schedule editing, enable toggle and "Run now".
import { bulkResumeButton } from './bulk-resume';
import { canOperate, guard } from './access';
import { api } from './api';
import { knownTimezones, validateCron, validateTimezone } from './cron';
import { h, replaceChildren } from './dom';
import { durationEl, pill, timeEl } from './format';
import type { LiveEvent, Pipeline, View, Dataset } from './types';
import { confirmAndRun, emptyBlock, errorBlock, errorMessage, loadingBlock, setBusy, toast } from './ui';

function ensureTzDatalist(): void {
  if (document.getElementById('tz-list')) return;
  const dl = h('datalist', { id: 'tz-list' }, knownTimezones().map((z) => h('option', { value: z })));
  document.body.appendChild(dl);
}

class PipelineRow {
  readonly tr: HTMLTableRowElement;
  private p: Pipeline;
  private readonly nameCell = h('td', { class: 'cell-name', 'data-label': 'Pipeline' });
  private staleBadge: HTMLElement | null = null;
  private readonly lastCell = h('td', { 'data-label': 'Last run' });
  private readonly nextCell = h('td', { 'data-label': 'Next run' });
  private readonly cronInput: HTMLInputElement;
  private readonly tzInput: HTMLInputElement;
  private readonly saveBtn: HTMLButtonElement;
  private readonly cronMsg: HTMLElement;
  private readonly toggle: HTMLInputElement;
  private readonly toggleText = h('span', { class: 'switch-text' });

  constructor(p: Pipeline, private readonly reload: () => void) {
    this.p = p;
    const id = p.id;
    this.cronInput = h('input', { class: 'input mono cron', 'data-testid': `cron-input-${id}`, 'aria-label': `Cron for ${id}`, spellcheck: 'false', autocomplete: 'off', value: p.cron });
    this.tzInput = h('input', { class: 'input tz', 'data-testid': `tz-input-${id}`, 'aria-label': `Time zone for ${id}`, list: 'tz-list', spellcheck: 'false', autocomplete: 'off', value: p.timezone });
    this.saveBtn = h('button', { type: 'submit', class: 'btn btn-small', 'data-testid': `save-cron-${id}`, disabled: true }, 'Save');
    this.cronMsg = h('div', { class: 'field-msg', 'data-testid': `cron-error-${id}`, 'aria-live': 'polite' });
    const form = h('form', { class: 'cron-form', novalidate: true }, this.cronInput, this.tzInput, this.saveBtn, this.cronMsg);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.saveCron();
    });
    for (const inp of [this.cronInput, this.tzInput]) inp.addEventListener('input', () => this.validate());

    this.toggle = h('input', { type: 'checkbox', class: 'switch', role: 'switch', 'data-testid': `toggle-enabled-${id}`, 'aria-label': `Enable ${id}` });
    this.toggle.addEventListener('change', () => void this.setEnabled(this.toggle.checked));

    const runBtn = guard(h('button', { type: 'button', class: 'btn btn-primary btn-small', 'data-testid': `run-now-${id}` }, 'Run now'));
    for (const el of [this.cronInput, this.tzInput, this.saveBtn, this.toggle]) guard(el);
    runBtn.addEventListener('click', () => void this.runNow(runBtn));

    this.tr = h(
      'tr',
      { 'data-testid': `pipeline-row-${id}`, 'data-pipeline-id': id },
      this.nameCell,
      this.lastCell,
      this.nextCell,
      h('td', { class: 'cell-cron', 'data-label': 'Schedule' }, form),
      h('td', { 'data-label': 'Enabled' }, h('label', { class: 'switch-label' }, this.toggle, this.toggleText)),
      h('td', { class: 'cell-actions', 'data-label': '' }, h('div', { class: 'row-actions' }, runBtn,
        h('a', { class: 'btn btn-small btn-ghost', href: `#/pipelines/${encodeURIComponent(id)}`, 'data-testid': `runs-link-${id}` }, 'Runs'))),
    );
    this.update(p);
  }

  private dirty(): boolean {
    return this.cronInput.value.trim() !== this.p.cron || this.tzInput.value.trim() !== this.p.timezone;
  }

  private validate(): boolean {
    const msg = validateCron(this.cronInput.value) ?? validateTimezone(this.tzInput.value);
    this.cronMsg.textContent = msg ?? '';
    this.cronMsg.classList.toggle('error', msg !== null);
    this.cronInput.classList.toggle('invalid', validateCron(this.cronInput.value) !== null);
    this.tzInput.classList.toggle('invalid', validateTimezone(this.tzInput.value) !== null);
    this.saveBtn.disabled = !canOperate() || msg !== null || !this.dirty();
    return msg === null;
  }

  /** Marks the row when any of its datasets is stale or was never published. */
  setStale(stale: Dataset[]): void {
    this.staleBadge?.remove();
    this.staleBadge = null;
    if (stale.length === 0) return;
    const title = stale.map((d) => `${d.dataset}: ${d.status}${d.reason ? ` (${d.reason})` : ''}`).join('\n');
    this.staleBadge = h('a', { class: 'badge badge-stale', href: '#/datasets', 'data-testid': `stale-${this.p.id}`, title },
      stale.some((d) => d.status === 'stale') ? 'stale' : 'never published');
    this.nameCell.firstElementChild?.after(this.staleBadge);
  }

  update(p: Pipeline): void {
    const wasDirty = this.dirty();
    this.p = p;
    const href = `#/pipelines/${encodeURIComponent(p.id)}`;
    replaceChildren(
      this.nameCell,
      h('a', { class: 'pipeline-id mono', href }, p.id),
      p.sandbox ? h('span', { class: 'badge badge-sandbox', 'data-testid': `sandbox-${p.id}`, title: 'Reads built-in local sandbox sources' }, 'sandbox') : null,
      p.description ? h('div', { class: 'muted small' }, p.description) : null,
    );
    if (this.staleBadge) this.nameCell.firstElementChild?.after(this.staleBadge);
    const r = p.lastRun;
    replaceChildren(
      this.lastCell,
      r
        ? h(
            'div',
            { class: 'last-run' },
            h('a', { href: `#/runs/${encodeURIComponent(r.id)}`, class: 'pill-link', 'data-testid': `last-run-${p.id}` }, pill(r.status)),
            h('div', { class: 'small' }, timeEl(r.startedAt ?? r.createdAt)),
            h('div', { class: 'small muted' }, 'took ', durationEl(r.startedAt, r.finishedAt, r.status === 'running')),
          )
        : h('span', { class: 'muted' }, 'No runs yet'),
    );
    replaceChildren(
      this.nextCell,
      p.enabled
        ? p.nextFireAt
          ? h('div', { class: 'small' }, timeEl(p.nextFireAt))
          : h('span', { class: 'muted' }, '—')
        : h('span', { class: 'muted' }, 'Paused'),
    );
    if (!wasDirty) {
      this.cronInput.value = p.cron;
      this.tzInput.value = p.timezone;
    }
    this.validate();
    this.toggle.checked = p.enabled;
    this.toggle.disabled = !canOperate();
    this.toggleText.textContent = p.enabled ? 'On' : 'Off';
    this.tr.classList.toggle('is-disabled', !p.enabled);
  }

  private async saveCron(): Promise<void> {
    if (!this.validate()) return;
    setBusy(this.saveBtn, true);
    try {
      const cron = this.cronInput.value.trim().replace(/\s+/g, ' ');
      const tz = this.tzInput.value.trim();
      const p = await api.setCron(this.p.id, cron, tz);
      this.cronInput.value = p.cron;
      this.tzInput.value = p.timezone;
      this.update(p);
      toast('ok', `Schedule of ${p.id} saved: ${p.cron} (${p.timezone})`);
    } catch (err) {
      this.cronMsg.textContent = errorMessage(err);
      this.cronMsg.classList.add('error');
      toast('error', `Schedule not saved: ${errorMessage(err)}`);
    } finally {
      setBusy(this.saveBtn, false);
      this.saveBtn.disabled = !canOperate() || !this.dirty();
    }
  }

  private async setEnabled(enabled: boolean): Promise<void> {
    this.toggle.disabled = true;
    try {
      const p = await api.setEnabled(this.p.id, enabled);
      this.update(p);
      toast('ok', `${p.id} ${p.enabled ? 'enabled' : 'disabled'}`);
    } catch (err) {
      this.toggle.checked = this.p.enabled;
      this.toggle.disabled = !canOperate();
      toast('error', `Could not ${enabled ? 'enable' : 'disable'} ${this.p.id}: ${errorMessage(err)}`);
    }
  }

  private async runNow(btn: HTMLButtonElement): Promise<void> {
    setBusy(btn, true);
    const id = this.p.id;
    await confirmAndRun(
      { title: `Run ${id} now?`, message: `Starts a manual run of ${id} immediately.`, okLabel: 'Run now' },
      () => api.trigger(id),
      (r) => [`Run of ${id} started. `, h('a', { href: `#/runs/${encodeURIComponent(r.runId)}` }, 'Open run')],
    );
    setBusy(btn, false);
    this.reload();
  }
}

export function pipelinesView(root: HTMLElement): View {
  ensureTzDatalist();
  const notice = h('div', { class: 'notice', hidden: true });
  const body = h('div', null, loadingBlock());
  replaceChildren(root, h('div', { class: 'view-head' }, h('h1', null, 'Pipelines'),
    h('div', { class: 'toolbar' }, bulkResumeButton(() => void refresh()))), notice, body);
  const rows = new Map<string, PipelineRow>();
  let tbody: HTMLTableSectionElement | null = null;
  let alive = true;
  let seq = 0;

  async function refresh(): Promise<void> {
    const my = ++seq;
    try {
      const list = await api.listPipelines();
      if (!alive || my !== seq) return;
      notice.hidden = true;
      if (list.length === 0) {
        rows.clear();
        tbody = null;
        replaceChildren(body, emptyBlock('No pipelines', 'Run the migration to seed the pipelines.'));
        return;
      }
      if (!tbody) {
        tbody = h('tbody');
        replaceChildren(
          body,
          h('div', { class: 'table-wrap' }, h('table', { class: 'table table-cards pipelines', 'data-testid': 'pipelines-table' },
            h('thead', null, h('tr', null, ['Pipeline', 'Last run', 'Next run', 'Schedule (cron · time zone)', 'Enabled', ''].map((t) => h('th', null, t)))),
            tbody)),
        );
      }
      const seen = new Set<string>();
      for (const p of list) {
        seen.add(p.id);
        let row = rows.get(p.id);
        if (row) row.update(p);
        else rows.set(p.id, (row = new PipelineRow(p, () => void refresh())));
        tbody.appendChild(row.tr); // keeps server order
      }
      for (const [id, row] of rows) if (!seen.has(id)) { row.tr.remove(); rows.delete(id); }
      // Freshness is a second read: the pipelines stay usable when it fails.
      const datasets = await api.datasets().catch(() => null);
      if (datasets && alive && my === seq) {
        for (const [id, row] of rows) row.setStale(datasets.filter((d) => d.pipelineId === id && d.status !== 'fresh'));
      }
    } catch (err) {
      if (!alive || my !== seq) return;
      if (tbody) {
        notice.hidden = false;
        notice.textContent = `Could not refresh: ${errorMessage(err)}`;
      } else {
        replaceChildren(body, errorBlock(err, () => { replaceChildren(body, loadingBlock()); void refresh(); }));
      }
    }
  }

  void refresh();
  return {
    refresh,
    onEvent: (ev: LiveEvent) => ev.type === 'run',
    dispose: () => { alive = false; },
  };
}
