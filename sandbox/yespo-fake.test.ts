// The Yespo fake with plain fetch: paging contract, auth, and each fault kind.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedFor, startYespoFake, yespoContact, type YespoFake } from './yespo-fake.js';

let fake: YespoFake;
const auth = (key: string) => ({ authorization: `Basic ${Buffer.from(`anyone:${key}`).toString('base64')}` });

const get = (group: string, startindex: number, maxrows: number, key = 'key-ovago', signal?: AbortSignal) =>
  fetch(`${fake.url}/group/${group}/contacts?startindex=${startindex}&maxrows=${maxrows}`, {
    headers: auth(key),
    signal,
  });

beforeAll(async () => {
  fake = await startYespoFake({
    groups: {
      ovago: { apiKey: 'key-ovago', contacts: 1234 },
      brandb: { apiKey: 'key-b', contacts: (i) => (i < 3 ? { id: i + 1, custom: true } : undefined) },
    },
  });
});
afterAll(() => fake?.close());
beforeEach(() => fake.setFaults({}));

describe('Yespo fake: contract', () => {
  it('serves deterministic contacts page by page; a short page is the last', async () => {
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/v1$/);
    const ids: number[] = [];
    for (let start = 1; ; start += 500) {
      const res = await get('ovago', start, 500);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { id: number }[];
      ids.push(...page.map((c) => c.id));
      if (page.length < 500) break;
    }
    expect(ids).toHaveLength(1234);
    expect(new Set(ids).size).toBe(1234);
    const again = (await (await get('ovago', 1001, 2)).json()) as unknown[];
    expect(again).toEqual([yespoContact(1000, seedFor('ovago')), yespoContact(1001, seedFor('ovago'))]);
    expect(again[0]).toMatchObject({
      id: expect.any(Number),
      firstName: expect.any(String),
      lastName: expect.any(String),
      channels: expect.arrayContaining([{ type: 'email', value: expect.stringMatching(/@example\.com$/) }]),
      fields: expect.any(Array),
    });
    const last = fake.requests.at(-1);
    expect(last).toMatchObject({ groupId: 'ovago', startindex: 1001, maxrows: 2, status: 200 });
  });

  it('uses a generator for custom contacts; undefined ends the list', async () => {
    const res = await get('brandb', 1, 10, 'key-b');
    expect(await res.json()).toEqual([1, 2, 3].map((id) => ({ id, custom: true })));
  });

  it('wants Basic auth with the group key as password, maxrows <= 500', async () => {
    expect((await get('ovago', 1, 10, 'wrong')).status).toBe(401);
    expect((await fetch(`${fake.url}/group/ovago/contacts?startindex=1&maxrows=1`)).status).toBe(401);
    expect((await get('ovago', 1, 501)).status).toBe(400);
    expect((await get('ovago', 0, 10)).status).toBe(400);
    expect((await get('nope', 1, 10)).status).toBe(404);
  });
});

describe('Yespo fake: faults', () => {
  it('answers 503 N times for one (group, startindex), then recovers', async () => {
    fake.setFaults({ rules: [{ type: 'status', status: 503, groupId: 'ovago', startindex: 501, times: 2 }] });
    expect((await get('ovago', 1, 5)).status).toBe(200); // other pages unaffected
    expect((await get('ovago', 501, 5)).status).toBe(503);
    expect((await get('ovago', 501, 5)).status).toBe(503);
    expect((await get('ovago', 501, 5)).status).toBe(200);
    expect(fake.requests.slice(-4).map((r) => r.status)).toEqual([200, 503, 503, 200]);
  });

  it('answers 429 with Retry-After, keyed by request number', async () => {
    const before = fake.requests.length;
    // Request numbers count from the server start, so aim at "the next one".
    fake.setFaults({ rules: [{ type: 'rateLimit', retryAfterSeconds: 2, request: nextRequestNo() }] });
    const res = await get('ovago', 1, 5);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('2');
    expect((await get('ovago', 1, 5)).status).toBe(200);
    expect(fake.requests.length).toBe(before + 2);
  });

  it('delays a response, and a client timeout does not wedge the server', async () => {
    fake.setFaults({ rules: [{ type: 'delay', ms: 150, times: 1 }, { type: 'delay', ms: 10_000, startindex: 7 }] });
    const t0 = performance.now();
    expect((await get('ovago', 1, 5)).status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    await expect(get('ovago', 7, 5, 'key-ovago', AbortSignal.timeout(100))).rejects.toThrow();
    expect((await get('ovago', 1, 5)).status).toBe(200); // fast again
  });

  it('cuts the JSON body in half', async () => {
    fake.setFaults({ rules: [{ type: 'truncate', groupId: 'ovago' }] });
    const res = await get('ovago', 1, 50);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.startsWith('[{')).toBe(true);
    expect(() => JSON.parse(text)).toThrow();
  });

  it('resets the connection', async () => {
    fake.setFaults({ rules: [{ type: 'reset', times: 1 }] });
    await expect(get('ovago', 1, 5)).rejects.toThrow(/fetch failed/);
    expect(fake.requests.at(-1)?.status).toBe(0);
    expect((await get('ovago', 1, 5)).status).toBe(200);
  });

  it('serves malformed contacts at given indexes', async () => {
    fake.setFaults({
      malformed: [
        { index: 0, kind: 'idString' },
        { index: 1, kind: 'missingChannels', groupId: 'ovago' },
        { index: 2, kind: 'replace', value: null },
        { index: 3, kind: 'idString', groupId: 'other' },
      ],
    });
    const page = (await (await get('ovago', 1, 4)).json()) as Record<string, unknown>[];
    expect(page[0]?.id).toBe('abc');
    expect(page[1]).not.toHaveProperty('channels');
    expect(page[2]).toBeNull();
    expect(typeof page[3]?.id).toBe('number');
  });
});

/** The fake numbers contacts requests from 1 since start; tests here only use that endpoint. */
function nextRequestNo(): number {
  return fake.requests.length + 1;
}
