// Proves the real @clickhouse/client against the real local ClickHouse: a
// fresh database for this file, a MergeTree table, inserts, and a streamed
// JSONEachRow read. Keep the SQL valid on 18.16 and on modern servers.
import { isUtf8 } from 'node:buffer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClickHouseError, ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { clickHouseChunks, clickHouseLines } from '../../steps/sources/clickhouse';
import { ensureClickHouse, uniqueDatabaseName } from './clickhouse.js';

const DB = uniqueDatabaseName('fakes_clickhouse');
const ROWS = 10_000;
const DESTS = ['LON', 'NYC', 'KBP', 'WAW', 'BER'];

let admin: ClickHouseClient;
let ch: ClickHouseClient;

beforeAll(async () => {
  const url = await ensureClickHouse();
  // OFF: the unknown-table test fails on purpose and must not print.
  const log = { level: ClickHouseLogLevel.OFF };
  admin = createClient({ url, log });
  await admin.command({ query: `CREATE DATABASE ${DB}` });
  ch = createClient({ url, database: DB, log });
  await ch.command({
    query: `CREATE TABLE bookings (
      id UInt64, dest String, amount Float64, created_at DateTime
    ) ENGINE = MergeTree() ORDER BY id`,
  });
}, 300_000); // first run on a fresh machine installs the Debian package

afterAll(async () => {
  await admin?.command({ query: `DROP DATABASE IF EXISTS ${DB}` });
  await Promise.all([ch?.close(), admin?.close()]);
});

describe('real ClickHouse with @clickhouse/client', () => {
  it('inserts rows and streams them back as JSONEachRow', async () => {
    const values = Array.from({ length: ROWS }, (_, i) => ({
      id: i,
      dest: DESTS[i % DESTS.length],
      amount: i / 8, // exact in binary, so round-trips unchanged
      created_at: `2024-01-01 00:${String(Math.floor(i / 60) % 60).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}`,
    }));
    await ch.insert({ table: 'bookings', values, format: 'JSONEachRow' });

    const rs = await ch.query({ query: 'SELECT id, dest, amount FROM bookings ORDER BY id', format: 'JSONEachRow' });
    let count = 0;
    let mismatches = 0; // counted rather than expect()ed per row, which is slow
    for await (const rows of rs.stream<{ id: string | number; dest: string; amount: number }>()) {
      for (const row of rows) {
        const r = row.json();
        // UInt64 comes back as a string (old server, and modern by default).
        if (Number(r.id) !== count || r.dest !== DESTS[count % DESTS.length] || r.amount !== count / 8) mismatches++;
        count++;
      }
    }
    expect(count).toBe(ROWS);
    expect(mismatches).toBe(0);
  });

  it('reads a result as raw chunks of whole lines, the same rows as line by line', async () => {
    const sql = 'SELECT id, dest, amount FROM bookings ORDER BY id;';
    const lines: string[] = [];
    for await (const page of clickHouseLines(ch, sql.replace(';', ''), { batchSize: 1_000 })) lines.push(...page);
    const chunks: { data: Buffer; rows: number }[] = [];
    for await (const c of clickHouseChunks(ch, sql, { chunkBytes: 16 * 1024 })) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(5);
    expect(chunks.every((c) => c.data[c.data.length - 1] === 0x0a && c.rows === c.data.toString().split('\n').length - 1)).toBe(true);
    expect(chunks.reduce((n, c) => n + c.rows, 0)).toBe(ROWS);
    expect(Buffer.concat(chunks.map((c) => c.data)).toString('utf8')).toBe(`${lines.join('\n')}\n`);
  });

  it('turns String bytes that are not UTF-8 into U+FFFD in a raw read, as a decoding client would', async () => {
    const chunks: { data: Buffer; rows: number }[] = [];
    for await (const c of clickHouseChunks(ch, "SELECT unhex('41FF42') AS s FROM system.numbers LIMIT 3", {})) chunks.push(c);
    const data = Buffer.concat(chunks.map((c) => c.data));
    expect(isUtf8(data)).toBe(true);
    expect(data.toString('utf8')).toBe('{"s":"A\uFFFDB"}\n'.repeat(3));
  });

  it('fails a raw read when ClickHouse reports an error after the rows started', async () => {
    const read = async () => {
      for await (const _ of clickHouseChunks(ch, 'SELECT number, throwIf(number = 300000) AS x FROM system.numbers LIMIT 400000 SETTINGS max_block_size = 1000', { chunkBytes: 64 * 1024 })) {
        // consume
      }
    };
    await expect(read()).rejects.toThrow(/Code: 395/);
  });

  it('runs an aggregate like ch.top_dests', async () => {
    const rs = await ch.query({
      query: `SELECT dest, count() AS bookings, sum(amount) AS revenue
              FROM bookings GROUP BY dest ORDER BY bookings DESC, dest LIMIT 3`,
      format: 'JSONEachRow',
    });
    const rows = await rs.json<{ dest: string; bookings: string; revenue: number }>();
    expect(rows).toHaveLength(3);
    expect(rows.map((r) => r.dest)).toEqual(['BER', 'KBP', 'LON']);
    expect(rows[0]?.bookings).toBe(String(ROWS / DESTS.length)); // UInt64 as a string
  });

  it('rejects an unknown table; on 18.16 the error is a plain Error, not ClickHouseError', async () => {
    const err = await ch.query({ query: 'SELECT * FROM nope', format: 'JSONEachRow' }).catch((e: unknown) => e);
    // 18.16 words errors "Code: 60, e.displayText() = DB::Exception: ..." without
    // the "(UNKNOWN_TABLE)" suffix the client's parser needs, so the client
    // falls back to a plain Error. Modern servers give a ClickHouseError with
    // code '60'. Product code must classify errors by the "Code: N" text, not
    // by instanceof, to behave the same on both.
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^Code: 60[,.]/);
    if (err instanceof ClickHouseError) expect(err.code).toBe('60');
  });
});
