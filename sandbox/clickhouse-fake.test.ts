// The ClickHouse fake driven by the real @clickhouse/client, so a client
// upgrade that changes the request shape is caught here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClickHouseError, ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { startClickHouseFake, type ClickHouseFake } from './clickhouse-fake.js';

let fake: ClickHouseFake;
const clients: ClickHouseClient[] = [];

function client(compression = false): ClickHouseClient {
  const c = createClient({
    url: fake.url,
    compression: { response: compression, request: false },
    log: { level: ClickHouseLogLevel.OFF }, // failed queries are expected here
  });
  clients.push(c);
  return c;
}

async function* slowDests() {
  for (let i = 0; i < 3; i++) {
    await Promise.resolve();
    yield { dest: `D${i}`, n: String(i) };
  }
}

beforeAll(async () => {
  fake = await startClickHouseFake({
    resolve(sql) {
      if (/\bFROM\s+top_dests\b/i.test(sql)) return slowDests();
      if (/\bFROM\s+numbers\b/i.test(sql)) {
        return (function* () {
          for (let i = 0; i < 200_000; i++) yield { n: i, s: `row-${i}` };
        })();
      }
      if (/\bFROM\s+broken\b/i.test(sql)) {
        return (function* () {
          yield { n: 1 };
          throw new Error('disk on fire');
        })();
      }
      return null;
    },
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await fake?.close();
});

describe('ClickHouse fake with the real client', () => {
  it('answers ping', async () => {
    expect(await client().ping()).toEqual({ success: true });
  });

  it('streams JSONEachRow rows from an async resolver', async () => {
    const rs = await client().query({ query: 'SELECT dest, n FROM top_dests', format: 'JSONEachRow' });
    const got: unknown[] = [];
    for await (const rows of rs.stream()) for (const row of rows) got.push(row.json());
    expect(got).toEqual([0, 1, 2].map((i) => ({ dest: `D${i}`, n: String(i) })));
    expect(fake.requests.at(-1)).toEqual({ sql: 'SELECT dest, n FROM top_dests', format: 'JSONEachRow', status: 200 });
  });

  it('streams a large result with and without gzip', async () => {
    for (const compression of [false, true]) {
      const rs = await client(compression).query({ query: 'SELECT n, s FROM numbers', format: 'JSONEachRow' });
      let count = 0;
      let outOfOrder = 0; // counted, not expect()ed per row: 200k expects take seconds
      let last: { n: number; s: string } | undefined;
      for await (const rows of rs.stream<{ n: number; s: string }>()) {
        for (const row of rows) {
          const r = row.json();
          if (r.n !== count++) outOfOrder++;
          last = r;
        }
      }
      expect(count).toBe(200_000);
      expect(outOfOrder).toBe(0);
      expect(last).toEqual({ n: 199_999, s: 'row-199999' });
    }
  });

  it('maps an unresolved query to a ClickHouse UNKNOWN_TABLE error', async () => {
    const err = await client()
      .query({ query: 'SELECT * FROM nowhere', format: 'JSONEachRow' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClickHouseError);
    expect(err).toMatchObject({ code: '60', type: 'UNKNOWN_TABLE' });
  });

  it('reports a failure in the middle of a stream as an error', async () => {
    const rs = await client().query({ query: 'SELECT n FROM broken', format: 'JSONEachRow' });
    await expect(rs.json()).rejects.toThrow(/Code: 1001/); // old servers: the exception text lands in the row stream
  });
});
