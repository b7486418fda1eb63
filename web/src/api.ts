// Thin client for /api/etl. Same origin, cookie session or a bearer token kept in localStorage.
import type { Actor, AlertList, AttemptEvents, BulkResumeResult, Dataset, Pipeline, Reject, Run, RunsPage, Step, Tick } from './types';

export const API_BASE = '/api/etl';
const TOKEN_KEY = 'etl.apiToken';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function getToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage unavailable: the cookie session still works */
  }
}

type UnauthorizedHandler = (hadToken: boolean) => void;
let onUnauthorized: UnauthorizedHandler = () => {};
export function setUnauthorizedHandler(fn: UnauthorizedHandler): void {
  onUnauthorized = fn;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers['Authorization'] = `Bearer ${token}`;
  const init: RequestInit = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let res: Response;
  try {
    res = await fetch(API_BASE + path, init);
  } catch {
    throw new ApiError(0, 'network', 'The API is unreachable. Check your connection and that the api service is running.');
  }
  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = (data as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
    const message = typeof err?.message === 'string' && err.message ? err.message : `${res.status} ${res.statusText || 'error'}`;
    const code = typeof err?.code === 'string' ? err.code : String(res.status);
    if (res.status === 401) onUnauthorized(token !== null);
    throw new ApiError(res.status, code, message, err?.details);
  }
  if (data === null) throw new ApiError(res.status, 'bad_response', 'The API returned an unreadable response.');
  return data as T;
}

const enc = encodeURIComponent;

export const api = {
  listPipelines: () => request<{ pipelines: Pipeline[] }>('GET', '/pipelines').then((r) => r.pipelines),
  getPipeline: (id: string) => request<{ pipeline: Pipeline }>('GET', `/pipelines/${enc(id)}`).then((r) => r.pipeline),
  trigger: (id: string, params?: Record<string, unknown>) =>
    request<{ runId: string }>('POST', `/pipelines/${enc(id)}/trigger`, params ? { params } : {}),
  setEnabled: (id: string, enabled: boolean) =>
    request<{ pipeline: Pipeline }>('POST', `/pipelines/${enc(id)}/enable`, { enabled }).then((r) => r.pipeline),
  setCron: (id: string, cron: string, timezone: string) =>
    request<{ pipeline: Pipeline }>('PUT', `/pipelines/${enc(id)}/cron`, { cron, timezone }).then((r) => r.pipeline),
  listRuns: (id: string, opts: { limit?: number; cursor?: string | null; status?: string | null } = {}) => {
    const q = new URLSearchParams();
    q.set('limit', String(opts.limit ?? 20));
    if (opts.cursor) q.set('cursor', opts.cursor);
    if (opts.status) q.set('status', opts.status);
    return request<RunsPage>('GET', `/pipelines/${enc(id)}/runs?${q.toString()}`);
  },
  getRun: (runId: string) => request<{ run: Run }>('GET', `/runs/${enc(runId)}`).then((r) => r.run),
  getStep: (runId: string, step: string) =>
    request<{ step: Step }>('GET', `/runs/${enc(runId)}/steps/${enc(step)}`).then((r) => r.step),
  rejects: (runId: string, step: string) =>
    request<{ rowsRejected: number; rejects: Reject[] }>('GET', `/runs/${enc(runId)}/steps/${enc(step)}/rejects`),
  datasets: () => request<{ datasets: Dataset[] }>('GET', '/datasets').then((r) => r.datasets),
  retryStep: (runId: string, step: string) =>
    request<{ runId: string }>('POST', `/runs/${enc(runId)}/steps/${enc(step)}/retry`),
  resume: (runId: string) => request<{ runId: string }>('POST', `/runs/${enc(runId)}/resume`),
  rerun: (runId: string, fromStep: string) => request<{ runId: string }>('POST', `/runs/${enc(runId)}/rerun`, { fromStep }),
  cancel: (runId: string) => request<{ runId: string }>('POST', `/runs/${enc(runId)}/cancel`),
  me: () => request<{ actor: Actor; operator: boolean; operatorRoles: string[] }>('GET', '/me'),
  eventsTicket: () => request<{ ticket: string }>('POST', '/events/ticket').then((r) => r.ticket),
  stepEvents: (runId: string, step: string) =>
    request<{ attempts: AttemptEvents[] }>('GET', `/runs/${enc(runId)}/steps/${enc(step)}/events`).then((r) => r.attempts),
  bulkResume: (body: { pipelineId?: string; status?: ('failed' | 'cancelled')[]; dryRun?: boolean }) =>
    request<BulkResumeResult>('POST', '/runs/resume', body),
  listTicks: (id: string, limit = 30) =>
    request<{ ticks: Tick[] }>('GET', `/pipelines/${enc(id)}/ticks?limit=${limit}`).then((r) => r.ticks),
  listAlerts: (limit = 50) => request<AlertList>('GET', `/alerts?limit=${limit}`),
  testAlert: () => request<{ id: string }>('POST', '/alerts/test'),
};

/**
 * The event stream's URL. A cookie session needs nothing in it (EventSource sends the
 * cookie); with a stored API token, which EventSource cannot send as a header, a one-time
 * ticket goes in the URL instead: the token itself never does (it would reach access logs).
 */
export async function eventsUrl(): Promise<string> {
  if (!getToken()) return `${API_BASE}/events`;
  return `${API_BASE}/events?ticket=${enc(await api.eventsTicket())}`;
}
