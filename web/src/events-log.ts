// The drilldown's event log of a step (SPEC §14): one section per attempt, newest first
// and open; each event is a time, a type and a message.
import { api } from './api';
import { h, replaceChildren } from './dom';
import { fmtTime } from './format';
import type { AttemptEvents, StepEvent } from './types';
import { errorMessage } from './ui';

const TONE: Record<string, string> = { retry: 'amber', rate_limited: 'amber', check: 'blue', published: 'green', staged: 'grey', page: 'grey' };

function eventRow(e: StepEvent): HTMLElement {
  const failedCheck = e.type === 'check' && e.data?.['passed'] === false;
  return h('tr', { 'data-event-type': e.type },
    h('td', { class: 'small mono nowrap' }, fmtTime(e.at).split(' ').pop() ?? e.at),
    h('td', null, h('span', { class: `pill pill-${failedCheck ? 'red' : TONE[e.type] ?? 'grey'}` }, e.type)),
    h('td', { class: 'small break' }, e.message));
}

function attemptBlock(a: AttemptEvents, open: boolean, key: string): HTMLElement {
  const d = h('details', { class: 'event-attempt', 'data-testid': `events-${key}-attempt-${a.attempt}` },
    h('summary', null, `Attempt ${a.attempt} · ${a.status} · ${a.events.length} event${a.events.length === 1 ? '' : 's'}`),
    a.dropped ? h('p', { class: 'small muted' }, `${a.dropped} older events were dropped (the newest 200 are kept).`) : null,
    a.events.length === 0 ? h('p', { class: 'small muted' }, 'No events.')
      : h('div', { class: 'table-wrap' }, h('table', { class: 'table table-compact events' },
        h('tbody', null, a.events.map(eventRow)))));
  d.open = open;
  return d;
}

export function fillEventLog(box: HTMLElement, runId: string, key: string): void {
  replaceChildren(box, h('p', { class: 'muted small' }, 'Loading events…'));
  api.stepEvents(runId, key).then(
    (attempts) => replaceChildren(box, attempts.length === 0
      ? h('p', { class: 'muted small' }, 'No attempts yet.')
      : attempts.map((a, i) => attemptBlock(a, i === 0, key))),
    (err) => replaceChildren(box, h('p', { class: 'text-red small' }, errorMessage(err))),
  );
}
