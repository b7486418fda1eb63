// Entry point: shell, hash router, live updates.
import { readOnlyReason, setAccess } from './access';
import { alertsView } from './alerts';
import { api, getToken, setToken, setUnauthorizedHandler } from './api';
import { h, replaceChildren } from './dom';
import { durationMs, fmtDuration } from './format';
import { datasetsView } from './datasets';
import { connectLive, type LiveState } from './live';
import { pipelinesView } from './pipelines';
import { runView } from './run';
import { runsView } from './runs';
import type { LiveEvent, View } from './types';
import { showLogin } from './ui';
import { workersBanner } from './workers';

const liveDot = h('span', { class: 'live', 'data-testid': 'live-indicator', 'data-state': 'connecting', title: 'Live updates' }, 'connecting');
const tokenBtn = h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'forget-token', hidden: true }, 'Forget API token');
const viewRoot = h('main', { class: 'view', id: 'view' });
const readOnly = h('div', { class: 'notice', 'data-testid': 'read-only-notice', role: 'status', hidden: true });

let current: View | null = null;
let debounce: ReturnType<typeof setTimeout> | null = null;
let liveState: LiveState = 'connecting';

function route(): void {
  if (debounce) clearTimeout(debounce);
  debounce = null;
  current?.dispose();
  current = null;
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  window.scrollTo(0, 0);
  // One section is current: alerts, datasets, or pipelines (every other view is under it).
  const section = parts[0] === 'alerts' || parts[0] === 'datasets' ? parts[0] : '';
  for (const a of document.querySelectorAll<HTMLAnchorElement>('.topnav a')) {
    if (a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (parts.length === 0) {
    document.title = 'Pipelines · ETL';
    current = pipelinesView(viewRoot);
  } else if (parts[0] === 'datasets' && parts.length === 1) {
    document.title = 'Datasets · ETL';
    current = datasetsView(viewRoot);
  } else if (parts[0] === 'pipelines' && parts.length === 2 && parts[1]) {
    document.title = `${parts[1]} · ETL`;
    current = runsView(viewRoot, parts[1]);
  } else if (parts[0] === 'runs' && parts.length === 2 && parts[1]) {
    document.title = `Run ${parts[1]} · ETL`;
    current = runView(viewRoot, parts[1]);
  } else if (parts[0] === 'alerts' && parts.length === 1) {
    document.title = 'Alerts · ETL';
    current = alertsView(viewRoot);
  } else {
    document.title = 'Not found · ETL';
    replaceChildren(viewRoot, h('div', { class: 'state state-error', 'data-testid': 'error' },
      h('strong', null, 'Page not found'), h('p', null, h('a', { href: '#/' }, 'Back to pipelines'))));
  }
}

function scheduleRefresh(): void {
  if (debounce) clearTimeout(debounce);
  debounce = setTimeout(() => {
    debounce = null;
    void current?.refresh();
  }, 150);
}

function onLiveEvent(ev: LiveEvent): void {
  if (current?.onEvent(ev)) scheduleRefresh();
}

function onLiveState(s: LiveState, recovered: boolean): void {
  liveState = s;
  liveDot.dataset['state'] = s;
  liveDot.textContent = s === 'off' ? 'no live updates' : s;
  if (recovered) scheduleRefresh(); // events may have been missed while down
}

function updateTokenBtn(): void {
  tokenBtn.hidden = getToken() === null;
}

function boot(): void {
  const shell = h('div', { class: 'shell' },
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'ETL operations'),
      h('nav', { class: 'topnav' },
        h('a', { href: '#/', 'data-testid': 'nav-pipelines' }, 'Pipelines'),
        h('a', { href: '#/datasets', 'data-testid': 'nav-datasets' }, 'Datasets'),
        h('a', { href: '#/alerts', 'data-testid': 'nav-alerts' }, 'Alerts')),
      h('div', { class: 'topbar-right' }, liveDot, tokenBtn)),
    workersBanner(),
    readOnly,
    viewRoot);
  replaceChildren(document.body, shell);

  // Who is signed in decides which actions are enabled: ask before drawing any view.
  const start = async () => {
    try {
      const me = await api.me();
      setAccess(me);
      readOnly.hidden = me.operator;
      readOnly.textContent = me.operator ? '' : `${readOnlyReason()} You can look at everything, but not start, retry, cancel or reschedule.`;
    } catch {
      /* 401 shows the login form (its handler calls start again); other errors: the views say so */
    }
    route();
  };

  const live = connectLive(onLiveEvent, onLiveState);
  setUnauthorizedHandler((hadToken) => {
    if (hadToken) setToken(null);
    updateTokenBtn();
    showLogin(hadToken, () => {
      updateTokenBtn();
      live.reconnect();
      void start();
    });
  });
  tokenBtn.addEventListener('click', () => {
    setToken(null);
    updateTokenBtn();
    live.reconnect();
    void start();
  });
  updateTokenBtn();

  window.addEventListener('hashchange', route);
  void start();

  // keep open durations counting
  setInterval(() => {
    for (const el of document.querySelectorAll<HTMLElement>('[data-live-since]')) {
      el.textContent = fmtDuration(durationMs(el.dataset['liveSince'], null));
    }
  }, 1000);
  // fallback polling while the event stream is down
  setInterval(() => {
    if (liveState !== 'live' && document.visibilityState === 'visible') void current?.refresh();
  }, 15_000);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
