// Shared UI pieces: toasts, the in-page confirm dialog, the token login form, state blocks.
import { ApiError, setToken } from './api';
import { h } from './dom';

// ---------- toasts ----------
let toastBox: HTMLElement | null = null;

export function toast(kind: 'ok' | 'error' | 'info', ...content: (Node | string)[]): void {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(toastBox);
  }
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss' }, '×');
  const el = h('div', { class: `toast toast-${kind}`, 'data-testid': 'toast', 'data-kind': kind }, h('div', { class: 'toast-body' }, ...content), close);
  const remove = () => el.remove();
  close.addEventListener('click', remove);
  toastBox.appendChild(el);
  setTimeout(remove, kind === 'error' ? 9000 : 5000);
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

// ---------- confirm dialog ----------
export interface ConfirmOpts {
  title: string;
  message: string;
  okLabel?: string;
  danger?: boolean;
}

export function confirmDialog(opts: ConfirmOpts): Promise<boolean> {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: opts.danger ? 'btn btn-danger' : 'btn btn-primary', 'data-testid': 'confirm-ok' }, opts.okLabel ?? 'Confirm');
    const cancel = h('button', { type: 'button', class: 'btn', 'data-testid': 'confirm-cancel' }, 'Cancel');
    const box = h(
      'div',
      { class: 'dialog', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'confirm-title', 'data-testid': 'confirm-dialog' },
      h('h2', { id: 'confirm-title' }, opts.title),
      h('p', null, opts.message),
      h('div', { class: 'dialog-actions' }, cancel, ok),
    );
    const backdrop = h('div', { class: 'backdrop' }, box);
    const prevFocus = document.activeElement as HTMLElement | null;
    const done = (v: boolean) => {
      document.removeEventListener('keydown', onKey, true);
      backdrop.remove();
      prevFocus?.focus?.();
      resolve(v);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        done(false);
      }
    };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    backdrop.addEventListener('click', (e) => {
      if (e.target === backdrop) done(false);
    });
    document.addEventListener('keydown', onKey, true);
    document.body.appendChild(backdrop);
    ok.focus();
  });
}

/**
 * Confirm, call the API, toast the outcome. Returns the result, or null if the
 * operator declined or the call failed (the failure is toasted).
 */
export async function confirmAndRun<T>(opts: ConfirmOpts, action: () => Promise<T>, success: (r: T) => (Node | string)[]): Promise<T | null> {
  if (!(await confirmDialog(opts))) return null;
  try {
    const r = await action();
    toast('ok', ...success(r));
    return r;
  } catch (err) {
    toast('error', errorMessage(err));
    return null;
  }
}

// ---------- token login ----------
let loginOpen = false;

export function showLogin(hadToken: boolean, onDone: () => void): void {
  if (loginOpen) return;
  loginOpen = true;
  const input = h('input', {
    type: 'password',
    class: 'input',
    id: 'token-input',
    'data-testid': 'token-input',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'ETL API token',
  });
  const form = h(
    'form',
    { class: 'dialog login', 'data-testid': 'login-form', 'aria-labelledby': 'login-title' },
    h('h2', { id: 'login-title' }, 'Sign in'),
    h('p', null, hadToken ? 'The stored API token was rejected. Paste a valid one.' : 'Your session is missing or expired. Sign in to the main app and reload, or paste an API token.'),
    h('label', { for: 'token-input' }, 'API token'),
    input,
    h('div', { class: 'dialog-actions' }, h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'token-submit' }, 'Use token')),
  );
  const backdrop = h('div', { class: 'backdrop' }, form);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (!v) return;
    setToken(v);
    backdrop.remove();
    loginOpen = false;
    onDone();
  });
  document.body.appendChild(backdrop);
  input.focus();
}

// ---------- state blocks ----------
export function loadingBlock(text = 'Loading…'): HTMLElement {
  return h('div', { class: 'state state-loading', 'data-testid': 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

export function emptyBlock(title: string, hint?: string): HTMLElement {
  return h('div', { class: 'state state-empty', 'data-testid': 'empty' }, h('strong', null, title), hint ? h('p', null, hint) : null);
}

export function errorBlock(err: unknown, retry?: () => void): HTMLElement {
  let title = 'Something went wrong';
  if (err instanceof ApiError) {
    if (err.status === 0) title = 'API unreachable';
    else if (err.status === 401) title = 'Sign-in required';
    else if (err.status === 404) title = 'Not found';
  }
  return h(
    'div',
    { class: 'state state-error', 'data-testid': 'error', role: 'alert' },
    h('strong', null, title),
    h('p', null, errorMessage(err)),
    retry ? h('button', { type: 'button', class: 'btn', onclick: retry }, 'Try again') : null,
  );
}

export function setBusy(btn: HTMLButtonElement, busy: boolean): void {
  // A control guard() disabled for a viewer stays disabled.
  btn.disabled = busy || btn.dataset['readonly'] === 'true';
  btn.classList.toggle('busy', busy);
}

