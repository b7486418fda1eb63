import type { Logger } from '../../lib/logger';
import { redact, registerSecret } from '../../lib/redact';
import { NonRetryableError, RetryAfterError, YespoRateLimitedError, YespoTransientError } from '../../lib/errors';
import { sleep, type RateLimiter } from '../rate-limit';

/**
 * Yespo `GET {base}/group/{groupId}/contacts?startindex=S&maxrows=M` (Basic auth, API key
 * as password): one page (fetchContactsPage) and the page loop with rate limit, retries
 * and Retry-After (paginateContacts). The `paginate` step built on them is in yespo.ts.
 *
 * Error policy, which the engine relies on: 5xx / 408 / resets / timeouts / cut-off JSON are
 * retried here with backoff, then fail the attempt (the engine retries the step, resuming
 * from the checkpoint); a 429 is waited out here when short, else RetryAfterError; any
 * other 4xx, a redirect or a non-array body is NonRetryableError. No message carries the key.
 */
export const YESPO_MAX_PAGE = 500;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = { attempts: 5, baseMs: 1_000, maxMs: 30_000 };

export interface FetchPageOptions {
  baseUrl: string;
  apiKey: string;
  groupId: string;
  startIndex: number;
  maxRows: number;
  signal?: AbortSignal;
  /** Per request, body included (default 30 s). */
  timeoutMs?: number;
  fetchImpl?: typeof fetch;
}

export async function fetchContactsPage(o: FetchPageOptions): Promise<unknown[]> {
  registerSecret(o.apiKey);
  const url = `${o.baseUrl.replace(/\/+$/, '')}/group/${encodeURIComponent(o.groupId)}/contacts?startindex=${o.startIndex}&maxrows=${o.maxRows}`;
  const what = `Yespo group ${o.groupId} contacts at startindex ${o.startIndex}`;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
  let res: Response;
  let text: string;
  try {
    res = await (o.fetchImpl ?? fetch)(url, {
      headers: { authorization: `Basic ${Buffer.from(`etl:${o.apiKey}`).toString('base64')}`, accept: 'application/json' },
      // A redirect means a wrong base URL; following it could carry the key elsewhere.
      redirect: 'manual',
      signal,
    });
    // Read inside the try: a reset or the timeout can also strike mid-body.
    text = await res.text();
  } catch (err) {
    if (o.signal?.aborted) throw o.signal.reason;
    if (timeout.aborted) throw new YespoTransientError(`${what}: no complete answer within ${timeoutMs} ms`);
    throw new YespoTransientError(`${what}: ${networkError(err)}`);
  }
  if (res.status === 429) {
    throw new YespoRateLimitedError(`${what}: HTTP 429 Too Many Requests`, parseRetryAfter(res.headers.get('retry-after')));
  }
  if (!res.ok) {
    const detail = `HTTP ${res.status}${snippet(text)}`;
    if (res.status >= 500 || res.status === 408) throw new YespoTransientError(`${what}: ${detail}`);
    const hint = res.status >= 300 && res.status < 400 ? ` (redirect to ${res.headers.get('location') ?? '?'}: is the base URL right?)`
      : res.status === 401 || res.status === 403 ? ' (the API key was refused: check the credential of this brand)'
        : res.status === 404 ? ' (no such group, or a wrong base URL)' : '';
    throw new NonRetryableError(redact(`${what}: ${detail}${hint}`));
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new YespoTransientError(`${what}: the body is not valid JSON (${text.length} chars; cut off?)`);
  }
  if (!Array.isArray(body)) {
    throw new NonRetryableError(`${what}: expected a JSON array of contacts, got ${body === null ? 'null' : typeof body}`);
  }
  const contacts: unknown[] = body; // Array.isArray narrows to any[]
  return contacts;
}

export interface PageInfo {
  startIndex: number;
  nextStartIndex: number;
  last: boolean;
  /** From the first request for the page to its answer, waits and retries included. */
  ms: number;
}

/** What the page loop tells the step's event log: rate-limit waits and retries. */
export type PaginateEvent = (type: 'rate_limited' | 'retry', message: string, data: Record<string, unknown>) => void;

export interface PaginateOptions {
  baseUrl: string;
  apiKey: string;
  groupId: string;
  pageSize: number; // maxrows, 1..500
  startIndex: number; // 1-based, from the checkpoint
  limiter: RateLimiter;
  signal: AbortSignal;
  log?: Pick<Logger, 'warn'>;
  /** Per page; attempts include the first request. */
  retries?: { attempts: number; baseMs: number; maxMs: number };
  /** Longest 429 pause (all 429s of one page together) waited out in-process; default 60 s. */
  maxRetryAfterMs?: number;
  timeoutMs?: number;
  fetchImpl?: typeof fetch;
  /** Called after each page, before the next is requested; the caller stages and checkpoints. */
  onPage(rows: unknown[], page: PageInfo): Promise<void>;
  onEvent?: PaginateEvent;
}

export async function paginateContacts(o: PaginateOptions): Promise<{ pages: number; rows: number }> {
  if (!Number.isInteger(o.pageSize) || o.pageSize < 1 || o.pageSize > YESPO_MAX_PAGE) {
    throw new NonRetryableError(`Yespo page size must be an integer in 1..${YESPO_MAX_PAGE}, got ${o.pageSize}`);
  }
  if (!Number.isInteger(o.startIndex) || o.startIndex < 1) throw new NonRetryableError(`Yespo startindex must be >= 1, got ${o.startIndex}`);
  registerSecret(o.apiKey);
  let [start, pages, rows] = [o.startIndex, 0, 0];
  for (;;) {
    o.signal.throwIfAborted();
    const t0 = performance.now();
    const page = await fetchWithRetry(o, start);
    if (page.length > o.pageSize) {
      // The paging arithmetic below would skip or repeat contacts.
      throw new NonRetryableError(`Yespo group ${o.groupId} returned ${page.length} contacts for maxrows ${o.pageSize}`);
    }
    const info: PageInfo = {
      startIndex: start, nextStartIndex: start + page.length, last: page.length < o.pageSize, ms: Math.round(performance.now() - t0),
    };
    await o.onPage(page, info);
    pages++;
    rows += page.length;
    if (info.last) return { pages, rows };
    start = info.nextStartIndex;
  }
}

/** Marks an error that must not be retried here (it fails the attempt at once). */
class Final extends Error {
  constructor(readonly err: unknown) {
    super('not retried here');
  }
}

async function fetchWithRetry(o: PaginateOptions, startIndex: number): Promise<unknown[]> {
  const retries = o.retries ?? DEFAULT_RETRIES;
  const maxRetryAfterMs = o.maxRetryAfterMs ?? 60_000;
  let waited = 0;
  const once = async (): Promise<unknown[]> => {
    // 429s loop here rather than as retries: they are the server pacing us, not failures,
    // so they do not use up the retry budget (the waiting is bounded by maxRetryAfterMs).
    for (;;) {
      await o.limiter.acquire(o.signal);
      try {
        return await fetchContactsPage({ ...o, startIndex, maxRows: o.pageSize });
      } catch (err) {
        if (err instanceof YespoTransientError) throw err;
        if (!(err instanceof YespoRateLimitedError)) throw new Final(err);
        // No usable Retry-After: an ordinary retry with backoff.
        if (err.retryAfterMs === null) throw err;
        // The floor keeps "Retry-After: 0" answers from looping without ever reaching the cap.
        const wait = Math.max(err.retryAfterMs, 1_000);
        const data = { startindex: startIndex, waitMs: wait, retryAfterMs: err.retryAfterMs };
        if (waited + wait > maxRetryAfterMs) {
          // Too long to hold a worker slot: the engine re-queues the step for later.
          o.onEvent?.('rate_limited', `HTTP 429 at startindex ${startIndex}: Retry-After ${wait} ms is too long to wait here; the step is re-queued`, data);
          throw new Final(new RetryAfterError(`${err.message}; retry after ${wait} ms`, wait));
        }
        o.log?.warn({ groupId: o.groupId, startIndex, retryAfterMs: wait }, 'Yespo rate limited us; waiting');
        o.onEvent?.('rate_limited', `HTTP 429 at startindex ${startIndex}: waiting ${wait} ms (Retry-After)`, data);
        waited += wait;
        await sleep(wait, o.signal);
      }
    }
  };
  // Transient failures (5xx, resets, timeouts, a 429 without Retry-After, Redis hiccups in
  // the limiter) are retried with exponential backoff and jitter, as p-retry would.
  for (let attempt = 1; ; attempt++) {
    try {
      return await once();
    } catch (err) {
      if (err instanceof Final) throw err.err;
      if (o.signal.aborted) throw o.signal.reason;
      if (attempt >= retries.attempts) throw err;
      const delayMs = Math.min(retries.maxMs, Math.round(retries.baseMs * 2 ** (attempt - 1) * (1 + Math.random())));
      const reason = redact(err instanceof Error ? err.message : String(err));
      o.log?.warn({ groupId: o.groupId, startIndex, attempt, error: reason }, 'Yespo request failed; retrying');
      o.onEvent?.('retry', `request ${attempt} for startindex ${startIndex} failed; retrying in ${delayMs} ms: ${reason.slice(0, 200)}`, {
        startindex: startIndex, attempt, delayMs, reason: reason.slice(0, 300),
      });
      await sleep(delayMs, o.signal);
    }
  }
}

/** Retry-After is delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function networkError(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return `${e.message ?? String(err)}${cause ? ` (${cause})` : ''}`;
}

/** The start of an error body: servers say useful things there ("Group not found"). */
function snippet(text: string): string {
  const s = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  return s ? `: ${s}` : '';
}
