import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readBlobBytes } from '../../db/blobs';
import { insertRun } from '../../db/runs';
import { seedFor, startYespoFake, yespoContact, type FaultPlan, type YespoFake } from '../../sandbox/yespo-fake';
import { freshDatabase, REDIS_URL, silentLog, uid } from '../../test/helpers';
import type { StepContext } from '../define';
import { NonRetryableError, RetryAfterError } from '../../lib/errors';
import { createRateLimiter, type RateLimiter } from '../rate-limit';
import { readStaged } from '../staging';
import { YespoTransientError } from '../../lib/errors';
import { fetchContactsPage, paginateContacts, parseRetryAfter, type PageInfo, type PaginateOptions } from './yespo-client';
import { yespoPaginateStep, type YespoPaginateConfig, type YespoServices } from './yespo';
import { normaliseContact, parseContacts } from './yespo-schema';

// Real HTTP against the local Yespo fake, the real Redis limiter, real Postgres staging.
const KEY = uid('yespo-test-api-key');
const TOTAL = 2345;
const prefix = uid('yespo-test');
let fake: YespoFake;
let redis: Redis;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let acquires = 0;
let limiter: RateLimiter;

beforeAll(async () => {
  fake = await startYespoFake({ groups: { ovago: { apiKey: KEY, contacts: TOTAL } } });
  redis = new Redis(REDIS_URL);
  db = await freshDatabase([{ id: 'yespo.test', workflow: 'yespo', description: '', cron: '0 * * * *', timezone: 'UTC', config: {} }]);
  const inner = createRateLimiter(redis, { key: `${prefix}:limiter`, ratePerSec: 2_000, burst: 50 });
  limiter = { acquire: (s) => (acquires++, inner.acquire(s)) };
});
afterAll(async () => {
  await fake?.close();
  await redis?.del(`${prefix}:limiter`);
  redis?.disconnect();
  await db?.drop();
});
beforeEach(() => fake.setFaults({}));

/** Runs the paginator with test-speed retries; returns the pages and the requests it made. */
async function paginate(faults: FaultPlan, o: Partial<PaginateOptions> = {}) {
  fake.setFaults(faults);
  const before = fake.requests.length;
  const pages: { rows: unknown[]; info: PageInfo }[] = [];
  const run = paginateContacts({
    baseUrl: fake.url, apiKey: KEY, groupId: 'ovago', pageSize: 500, startIndex: 1, limiter, signal: new AbortController().signal,
    retries: { attempts: 4, baseMs: 10, maxMs: 50 },
    onPage: (rows, info) => {
      pages.push({ rows, info });
      return Promise.resolve();
    },
    ...o,
  });
  const result = await run.catch((err: unknown) => err as Error);
  return { result, pages, requests: fake.requests.slice(before) };
}
const statusesAt = (reqs: YespoFake['requests'], start: number) => reqs.filter((r) => r.startindex === start).map((r) => r.status);

describe('paginateContacts against the fake', () => {
  it('reads every page; a short page is the last; the limiter is taken before each request', async () => {
    acquires = 0;
    const { result, pages, requests } = await paginate({});
    expect(result).toEqual({ pages: 5, rows: TOTAL });
    expect(pages.map((p) => p.info)).toEqual([1, 501, 1001, 1501, 2001].map((s, i) => ({
      startIndex: s, nextStartIndex: i < 4 ? s + 500 : TOTAL + 1, last: i === 4, ms: expect.any(Number),
    })));
    expect(pages.at(-1)!.rows).toHaveLength(345);
    expect(new Set(pages.flatMap((p) => p.rows.map((c) => (c as { id: number }).id))).size).toBe(TOTAL);
    expect(requests.map((r) => r.maxrows)).toEqual([500, 500, 500, 500, 500]);
    expect(acquires).toBe(requests.length);
  });

  it('retries 5xx and counts every retry against the limiter', async () => {
    acquires = 0;
    const { result, requests } = await paginate({ rules: [{ type: 'status', status: 503, startindex: 501, times: 2 }] });
    expect(result).toEqual({ pages: 5, rows: TOTAL });
    expect(statusesAt(requests, 501)).toEqual([503, 503, 200]);
    expect(acquires).toBe(7);
  });

  it('gives up after its attempts with a retryable error (the engine retries the step)', async () => {
    const { result, requests, pages } = await paginate({ rules: [{ type: 'status', status: 500, startindex: 1001, times: Infinity }] });
    expect(result).toBeInstanceOf(YespoTransientError);
    expect(result).not.toBeInstanceOf(NonRetryableError);
    expect((result as Error).message).toMatch(/group ovago .*startindex 1001: HTTP 500/);
    expect(statusesAt(requests, 1001)).toEqual([500, 500, 500, 500]);
    expect(pages).toHaveLength(2); // pages 1-2 were handed over (and checkpointed) first
  });

  it('waits out a 429 with Retry-After: 1 and carries on', async () => {
    const { result, requests } = await paginate({ rules: [{ type: 'rateLimit', retryAfterSeconds: 1, startindex: 501 }] });
    expect(result).toEqual({ pages: 5, rows: TOTAL });
    const [limited, ok] = requests.filter((r) => r.startindex === 501);
    expect([limited.status, ok.status]).toEqual([429, 200]);
    expect(ok.at - limited.at).toBeGreaterThanOrEqual(950);
    expect(ok.at - limited.at).toBeLessThan(3_000);
  });

  it('hands a long Retry-After to the engine as RetryAfterError', async () => {
    const { result, requests } = await paginate(
      { rules: [{ type: 'rateLimit', retryAfterSeconds: 120, startindex: 1 }] }, { maxRetryAfterMs: 5_000 });
    expect(result).toBeInstanceOf(RetryAfterError);
    expect((result as RetryAfterError).retryAfterMs).toBe(120_000);
    expect(requests).toHaveLength(1);
  });

  it('an abort during a 429 wait stops at once with the signal reason', async () => {
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(new Error('run cancelled')), 100);
    const { result } = await paginate({ rules: [{ type: 'rateLimit', retryAfterSeconds: 30, startindex: 1 }] }, { signal: ac.signal });
    expect((result as Error).message).toBe('run cancelled');
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  it('retries a page slower than the timeout, a cut-off JSON body and a reset connection', async () => {
    const { result, requests } = await paginate({
      rules: [
        { type: 'delay', ms: 3_000, startindex: 1 },
        { type: 'truncate', startindex: 1001 },
        { type: 'reset', startindex: 2001 },
      ],
    }, { timeoutMs: 1_000 }); // generous: an ordinary page on a busy machine must not time out
    expect(result).toEqual({ pages: 5, rows: TOTAL });
    expect(statusesAt(requests, 1)).toEqual([0, 200]); // 0: we hung up on the slow answer
    expect(statusesAt(requests, 1001)).toEqual([200, 200]);
    expect(statusesAt(requests, 2001)).toEqual([0, 200]);
  });

  it('resumes at a checkpoint without asking for earlier pages', async () => {
    const { result, requests, pages } = await paginate({}, { startIndex: 1001 });
    expect(result).toEqual({ pages: 3, rows: TOTAL - 1000 });
    expect(Math.min(...requests.map((r) => r.startindex))).toBe(1001);
    expect((pages[0].rows[0] as { id: number }).id).toBe(yespoContact(1000, seedFor('ovago')).id);
  });

  it('a refused key is non-retryable and its message and stack never show the key', async () => {
    const wrong = uid('wrong-secret-key');
    const { result, requests } = await paginate({}, { apiKey: wrong });
    expect(result).toBeInstanceOf(NonRetryableError);
    const err = result as Error;
    expect(err.message).toMatch(/group ovago .*HTTP 401.*API key was refused/);
    expect(`${err.message}\n${err.stack}`).not.toContain(wrong);
    expect(`${err.message}\n${err.stack}`).not.toContain(Buffer.from(`etl:${wrong}`).toString('base64'));
    expect(requests).toHaveLength(1);
  });

  it('an unknown group and a bad page size are non-retryable', async () => {
    const { result } = await paginate({}, { groupId: 'nope' });
    expect(result).toBeInstanceOf(NonRetryableError);
    expect((result as Error).message).toMatch(/group nope .*HTTP 404/);
    expect((await paginate({}, { pageSize: 501 })).result).toBeInstanceOf(NonRetryableError);
  });
  it('a non-array body and a redirect are non-retryable', async () => {
    const answer = (res: Response) => fetchContactsPage({
      baseUrl: 'http://yespo.invalid/api/v1', apiKey: KEY, groupId: 'g', startIndex: 1, maxRows: 10, fetchImpl: () => Promise.resolve(res),
    });
    await expect(answer(new Response('{"error":"x"}'))).rejects.toThrow(/expected a JSON array of contacts, got object/);
    await expect(answer(new Response(null, { status: 302, headers: { location: 'https://elsewhere/' } })))
      .rejects.toThrow(/HTTP 302 \(redirect to https:\/\/elsewhere\/: is the base URL right\?\)/);
  });
});

describe('contacts schema', () => {
  const page = async (malformed: FaultPlan['malformed']) => {
    fake.setFaults({ malformed });
    return fetchContactsPage({ baseUrl: fake.url, apiKey: KEY, groupId: 'ovago', startIndex: 1001, maxRows: 500 });
  };

  it('a malformed contact fails strict parsing naming the absolute row, id and field, not the payload', async () => {
    const rows = await page([{ index: 1234, kind: 'idString' }]);
    const err = (() => {
      try {
        parseContacts(rows, { skipBad: false, offset: 1000 });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(NonRetryableError);
    expect(err!.message).toMatch(/row 1235 \(id "abc"\): id: expected an integer id/);
    expect(err!.message).not.toContain('@example.com');
    const missing = await page([{ index: 1001, kind: 'missingChannels' }]);
    expect(() => parseContacts(missing, { skipBad: false, offset: 1000 })).toThrow(/row 1002 \(id \d+\): channels: /);
  });

  it('skipBad drops and counts malformed contacts', async () => {
    const rows = await page([{ index: 1000, kind: 'replace', value: 42 }, { index: 1499, kind: 'idString' }]);
    const r = parseContacts(rows, { skipBad: true, offset: 1000 });
    expect(r.bad).toBe(2);
    expect(r.contacts).toHaveLength(498);
    expect(r.firstError).toMatch(/row 1001: \(root\): /);
  });

  it('normalises a contact: first email and sms, fields by id, unknown fields under extra', () => {
    const raw = { ...yespoContact(1, 7), id: '123', channels: [{ type: 'push', value: 'tok' }, { type: 'EMAIL', value: ' a@b.c ' }] };
    const [c] = parseContacts([raw], { skipBad: false, offset: 0 }).contacts;
    const n = normaliseContact(c);
    expect(n).toMatchObject({ id: 123, email: 'a@b.c', phone: null, firstName: raw.firstName, externalCustomerId: raw.externalCustomerId });
    expect(n.fields).toEqual(Object.fromEntries(raw.fields.map((f) => [String(f.id), f.value])));
    expect(Object.keys(n.extra).sort()).toEqual(['address', 'contactKey', 'groups', 'languageCode', 'timeZone']);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('2')).toBe(2_000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(parseRetryAfter('soon')).toBeNull();
    expect(parseRetryAfter(null)).toBeNull();
  });
});

describe('yespoPaginateStep.run', () => {
  const config: YespoPaginateConfig = { brand: 'OVAGO', groupId: 'ovago', pageSize: 500, ratePerSec: 1_000 };

  async function newRun(): Promise<string> {
    const id = randomUUID();
    await insertRun(db.pool, { id, pipelineId: 'yespo.test', trigger: 'manual', params: {}, exclusive: false, steps: [{ key: 'paginate', position: 0, status: 'pending' }] });
    return id;
  }

  /** A hand-made context; each saved checkpoint is recorded with whether its chunk was durable. */
  function context(runId: string, checkpoint: unknown, cfg: Partial<YespoPaginateConfig> = {}) {
    const saved: { cp: Record<string, number>; chunkThere: boolean }[] = [];
    const events: { type: string; message: string; data?: Record<string, unknown> }[] = [];
    const ctx: StepContext<YespoServices, YespoPaginateConfig> = {
      runId, pipelineId: 'yespo.test', stepKey: 'paginate', attempt: 1, signal: new AbortController().signal,
      config: { ...config, ...cfg }, params: {}, input: undefined, outputs: {}, checkpoint, log: silentLog,
      saveCheckpoint: async (v) => {
        const cp = v as Record<string, number>;
        saved.push({ cp, chunkThere: (await readBlobBytes(db.pool, runId, 'paginate', cp.pagesDone - 1)) !== null });
      },
      reportRows: () => {},
      event: (type, message, data) => void events.push({ type, message, data }),
      progress: () => {},
      services: { db, redis, yespo: () => Promise.resolve({ baseUrl: fake.url, apiKey: KEY, sandbox: false }) },
    };
    return { ctx, saved, events };
  }

  it('stages one chunk per page, checkpoints after each, and resumes at the failed page', async () => {
    const runId = await newRun();
    // Page 3 is refused (a non-retryable answer, so this attempt fails at once).
    fake.setFaults({ rules: [{ type: 'status', status: 400, startindex: 1001 }] });
    const first = context(runId, null);
    await expect(yespoPaginateStep.run(first.ctx)).rejects.toThrow(/startindex 1001: HTTP 400/);
    expect(first.saved.map((s) => [s.cp.pagesDone, s.cp.nextStartIndex, s.chunkThere])).toEqual([[1, 501, true], [2, 1001, true]]);

    fake.setFaults({});
    const before = fake.requests.length;
    const second = context(runId, first.saved.at(-1)!.cp);
    const ref = await yespoPaginateStep.run(second.ctx);
    expect(ref).toEqual({ kind: 'staged', runId, name: 'paginate', chunks: 5, rows: TOTAL, sandbox: false, badRows: 0 });
    expect(fake.requests.slice(before).map((r) => r.startindex)).toEqual([1001, 1501, 2001]);
    expect(second.saved.map((s) => s.cp.pagesDone)).toEqual([3, 4, 5]);
    expect(second.saved.every((s) => s.chunkThere)).toBe(true);

    const ids: number[] = [];
    for await (const chunk of readStaged<{ id: number }>(db, ref)) ids.push(...chunk.map((c) => c.id));
    expect(ids).toEqual(Array.from({ length: TOTAL }, (_, i) => yespoContact(i, seedFor('ovago')).id));

    // A retry after the last page was checkpointed asks the API nothing.
    const after = fake.requests.length;
    expect(await yespoPaginateStep.run(context(runId, second.saved.at(-1)!.cp).ctx)).toEqual(ref);
    expect(fake.requests.length).toBe(after);
  });

  it('fails on a malformed contact, or with skipBadRows stages the rest and counts it', async () => {
    fake.setFaults({ malformed: [{ index: 777, kind: 'idString' }] });
    await expect(yespoPaginateStep.run(context(await newRun(), null).ctx)).rejects.toThrow(/row 778 \(id "abc"\): id:/);
    const { ctx, saved } = context(await newRun(), null, { skipBadRows: true });
    const ref = await yespoPaginateStep.run(ctx);
    expect(ref).toMatchObject({ rows: TOTAL - 1, badRows: 1 });
    expect(saved.at(-1)!.cp).toMatchObject({ fetched: TOTAL, rows: TOTAL - 1, bad: 1, pagesDone: 5 });
  });
});
