import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Database } from '../../db/client';
import type { Logger } from '../../lib/logger';
import { redact, registerSecret } from '../../lib/redact';
import { defineStep } from '../define';
import { NonRetryableError, RetryAfterError, YespoRateLimitedError, YespoTransientError } from '../../lib/errors';
import { createRateLimiter, rateLimitKey, sleep, type RateLimiter } from '../rate-limit';
import { writeChunk, type StagedRef } from '../staging';
import { parseContacts } from './yespo-schema';

/**
 * Yespo `GET {base}/group/{groupId}/contacts?startindex=S&maxrows=M` (Basic auth, API key
 * as password): one page (fetchContactsPage), the page loop with rate limit, retries and
 * Retry-After (paginateContacts), and the `paginate` step built on them.
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
  return body;
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
    super('final');
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

export interface YespoEndpoint {
  baseUrl: string;
  apiKey: string;
  /** True when no credential exists and the built-in local fake serves the data. */
  sandbox: boolean;
}

export interface YespoServices {
  db: Database;
  redis: Redis;
  yespo(brand: string): Promise<YespoEndpoint>;
}

export interface YespoPaginateConfig {
  brand: string;
  groupId: string;
  pageSize: number;
  ratePerSec: number;
  skipBadRows?: boolean;
}

const checkpointSchema = z.object({
  nextStartIndex: z.number().int().min(1),
  pagesDone: z.number().int().min(0),
  /** Valid contacts staged so far. */
  rows: z.number().int().min(0),
  fetched: z.number().int().min(0).default(0),
  bad: z.number().int().min(0).default(0),
  /** The last page is staged: a retry after a crash here need not ask the API again. */
  done: z.boolean().default(false),
});
export type PaginateCheckpoint = z.infer<typeof checkpointSchema>;

/** badRows: malformed contacts dropped under skipBadRows (the staged chunks hold none). */
export type YespoStagedRef = StagedRef & { sandbox: boolean; badRows: number };

const STAGE = 'paginate';

/**
 * Stages each page as chunk `seq = page index` (0-based) and checkpoints after it, so a
 * failure on page 40 resumes at page 40 and re-writing a page after a crash replaces it.
 * The chunks hold validated contacts (yespo-schema, unknown fields kept); malformed ones
 * fail the step, or with skipBadRows are dropped and counted in the checkpoint.
 */
export const yespoPaginateStep = defineStep<YespoServices, YespoPaginateConfig, unknown, YespoStagedRef>({
  key: 'paginate',
  retry: { attempts: 5, baseMs: 2_000, maxMs: 60_000 },
  timeoutMs: 30 * 60_000,
  output: z.object({
    kind: z.literal('staged'), runId: z.string(), name: z.string(), chunks: z.number(), rows: z.number(), sandbox: z.boolean(), badRows: z.number(),
  }),
  async run(ctx) {
    const { brand, groupId, pageSize, ratePerSec, skipBadRows = false } = ctx.config;
    const endpoint = await ctx.services.yespo(brand);
    registerSecret(endpoint.apiKey);
    const saved = checkpointSchema.safeParse(ctx.checkpoint);
    // An unreadable checkpoint (e.g. from an older build) only costs a restart from page 1.
    if (ctx.checkpoint != null && !saved.success) ctx.log.warn('paginate checkpoint unreadable; starting from the first page');
    let cp: PaginateCheckpoint = saved.success ? saved.data : { nextStartIndex: 1, pagesDone: 0, rows: 0, fetched: 0, bad: 0, done: false };
    const ref = (): YespoStagedRef => ({
      kind: 'staged', runId: ctx.runId, name: STAGE, chunks: cp.pagesDone, rows: cp.rows, sandbox: endpoint.sandbox, badRows: cp.bad,
    });
    ctx.reportRows({ in: cp.fetched, out: cp.rows });
    if (cp.done) return ref();

    const limiter = createRateLimiter(ctx.services.redis, { key: rateLimitKey('yespo', endpoint.apiKey), ratePerSec });
    await paginateContacts({
      baseUrl: endpoint.baseUrl, apiKey: endpoint.apiKey, groupId, pageSize, startIndex: cp.nextStartIndex,
      limiter, signal: ctx.signal, log: ctx.log, onEvent: (type, message, data) => ctx.event(type, message, data),
      async onPage(page, info) {
        const parsed = parseContacts(page, { skipBad: skipBadRows, offset: info.startIndex - 1 });
        if (parsed.bad) ctx.log.warn({ bad: parsed.bad, firstError: parsed.firstError }, 'skipped malformed Yespo contacts');
        await writeChunk(ctx.services.db, ctx.runId, STAGE, cp.pagesDone, parsed.contacts);
        cp = {
          nextStartIndex: info.nextStartIndex, pagesDone: cp.pagesDone + 1, rows: cp.rows + parsed.contacts.length,
          fetched: cp.fetched + page.length, bad: cp.bad + parsed.bad, done: info.last,
        };
        ctx.event('page', `page ${cp.pagesDone}: ${page.length} contacts from startindex ${info.startIndex} in ${info.ms} ms`, {
          startindex: info.startIndex, rows: page.length, ms: info.ms, ...(parsed.bad ? { bad: parsed.bad } : {}),
        });
        ctx.progress({ pagesDone: cp.pagesDone });
        await ctx.saveCheckpoint(cp);
        ctx.reportRows({ in: cp.fetched, out: cp.rows });
      },
    });
    return ref();
  },
});
