// View #/alerts : recent alerts (SPEC §12) with their webhook delivery state, and "Send test alert".
import { guard } from './access';
import { api } from './api';
import { h, replaceChildren } from './dom';
import { timeEl } from './format';
import type { AlertItem, LiveEvent, View } from './types';
import { emptyBlock, errorBlock, errorMessage, loadingBlock, setBusy, toast } from './ui';

const TYPE_TONE: Record<string, string> = {
  'run.failed': 'red', 'run.recovered': 'green', 'dataset.stale': 'amber', 'dataset.fresh': 'green', 'schedule.overdue': 'amber', test: 'blue',
};
const STATE_TONE: Record<string, string> = { pending: 'amber', delivered: 'green', failed: 'red', skipped: 'grey' };
const tone = (cls: string, text: string, testid?: string) => h('span', { class: `pill pill-${cls}`, 'data-testid': testid, 'data-status': text }, text);

function subject(a: AlertItem): HTMLElement {
  if (a.runId) return h('a', { href: `#/runs/${encodeURIComponent(a.runId)}`, class: 'mono' }, a.pipelineId ?? a.runId.slice(0, 8));
  if (a.dataset) return h('span', null, h('span', { class: 'mono' }, a.dataset), a.pipelineId ? h('span', { class: 'muted' }, ` · ${a.pipelineId}`) : '');
  if (a.pipelineId) return h('a', { href: `#/pipelines/${encodeURIComponent(a.pipelineId)}`, class: 'mono' }, a.pipelineId);
  return h('span', { class: 'muted' }, '—');
}

function delivery(a: AlertItem): HTMLElement {
  const bits: (Node | string)[] = [tone(STATE_TONE[a.state] ?? 'grey', a.state, `alert-state-${a.id}`)];
  bits.push(h('span', { class: 'muted' }, ` ${a.attempts} attempt${a.attempts === 1 ? '' : 's'}`));
  if (a.state === 'delivered' && a.deliveredAt) bits.push(h('div', { class: 'muted small' }, 'at ', timeEl(a.deliveredAt, false)));
  if (a.lastError && a.state !== 'delivered') bits.push(h('div', { class: 'alert-error small', 'data-testid': `alert-error-${a.id}` }, a.lastError));
  if (a.state === 'pending' && a.nextAttemptAt) bits.push(h('div', { class: 'muted small' }, 'next attempt ', timeEl(a.nextAttemptAt)));
  return h('div', null, bits);
}

export function alertsView(root: HTMLElement): View {
  const sendBtn = guard(h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'send-test-alert' }, 'Send test alert'));
  const config = h('div', { class: 'notice', 'data-testid': 'alerts-webhook-notice', hidden: true });
  const body = h('div', null, loadingBlock());
  replaceChildren(root,
    h('div', { class: 'view-head' }, h('h1', null, 'Alerts'), h('div', { class: 'row-actions' }, sendBtn)),
    h('p', { class: 'muted' }, 'Run failures and recoveries, stale datasets and overdue schedules, as posted to the alert webhook.'),
    config, body);
  let alive = true;
  let seq = 0;

  async function refresh(): Promise<void> {
    const my = ++seq;
    try {
      const list = await api.listAlerts(50);
      if (!alive || my !== seq) return;
      config.hidden = list.webhookConfigured;
      config.textContent = list.webhookConfigured ? '' : 'ALERT_WEBHOOK_URL is not set: alerts are recorded here but not sent.';
      if (list.alerts.length === 0) {
        replaceChildren(body, emptyBlock('No alerts yet', 'A failed run, a stale dataset or an overdue schedule shows up here.'));
        return;
      }
      replaceChildren(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table table-cards alerts', 'data-testid': 'alerts-table' },
        h('thead', null, h('tr', null, ['When', 'Type', 'Pipeline / dataset', 'Summary', 'Delivery'].map((t) => h('th', null, t)))),
        h('tbody', null, list.alerts.map((a) => h('tr', { 'data-testid': `alert-row-${a.id}`, 'data-alert-type': a.type },
          h('td', { 'data-label': 'When' }, timeEl(a.occurredAt)),
          h('td', { 'data-label': 'Type' }, tone(TYPE_TONE[a.type] ?? 'grey', a.type)),
          h('td', { 'data-label': 'Pipeline / dataset' }, subject(a)),
          h('td', { 'data-label': 'Summary', class: 'alert-summary' }, a.summary),
          h('td', { 'data-label': 'Delivery' }, delivery(a))))))));
    } catch (err) {
      if (!alive || my !== seq) return;
      replaceChildren(body, errorBlock(err, () => { replaceChildren(body, loadingBlock()); void refresh(); }));
    }
  }

  const sendTest = async () => {
    setBusy(sendBtn, true);
    try {
      await api.testAlert();
      toast('ok', 'Test alert queued; the worker sends it within seconds.');
      await refresh();
    } catch (err) {
      toast('error', `Could not queue a test alert: ${errorMessage(err)}`);
    } finally {
      setBusy(sendBtn, false);
    }
  };
  sendBtn.addEventListener('click', () => void sendTest());

  void refresh();
  // Delivery state changes in the worker, not through the event stream: poll while open.
  const timer = setInterval(() => void refresh(), 5_000);
  return {
    refresh,
    onEvent: (ev: LiveEvent) => ev.type === 'run',
    dispose: () => { alive = false; clearInterval(timer); },
  };
}
