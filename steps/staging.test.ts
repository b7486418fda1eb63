import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBlobBytes } from '../db/blobs';
import { freshDatabase } from '../test/helpers';
import { STAGING_CHUNK_BYTES } from './chunk-size';
import { openStaging, readStaged, readStagedBytes, readStagedLines } from './staging';

let db: Awaited<ReturnType<typeof freshDatabase>>;
const runId = '00000000-0000-4000-8000-00000000aaaa';

beforeAll(async () => {
  db = await freshDatabase();
  await db.pool.query(`insert into etl_pipelines (id, workflow, description, cron, timezone, config) values ('p', 'w', '', '* * * * *', 'UTC', '{}')`);
  await db.pool.query(`insert into etl_runs (id, pipeline_id, status, trigger) values ($1, 'p', 'running', 'manual')`, [runId]);
});
afterAll(async () => db?.drop());

describe('staging', () => {
  it('gives back exactly the bytes written, whatever they hold, chunk by chunk and in order', async () => {
    // Characters that text COPY would escape, multi-byte UTF-8, and a line longer than a chunk.
    const rows = [
      { s: 'tab\there, back\\slash, "quotes", newline\\n as text', n: 1 },
      { s: 'Cancún 東京 😀 \u2028', n: 2 },
      { s: 'x'.repeat(3 * 1024 * 1024), n: 3 },
      ...Array.from({ length: 20_000 }, (_, i) => ({ s: `row ${i}`, n: i })),
    ];
    const w = await openStaging(db, runId, 'mixed');
    await w.writeMany(rows.slice(0, 2));
    await w.writeBytes(Buffer.from(rows.slice(2, 10).map((r) => `${JSON.stringify(r)}\n`).join('')), 8);
    await w.writeLines(rows.slice(10).map((r) => JSON.stringify(r)));
    const ref = await w.close();
    expect(ref.rows).toBe(rows.length);
    expect(ref.chunks).toBeGreaterThan(2);

    const expected = rows.map((r) => `${JSON.stringify(r)}\n`).join('');
    const bytes: Buffer[] = [];
    for await (const c of readStagedBytes(db, ref)) bytes.push(c);
    expect(Buffer.concat(bytes).toString('utf8')).toBe(expected);
    const lines: string[] = [];
    for await (const l of readStagedLines(db, ref)) lines.push(...l);
    expect(lines.map((l) => `${l}\n`).join('')).toBe(expected);
    const parsed: unknown[] = [];
    for await (const b of readStaged(db, ref)) parsed.push(...b);
    expect(parsed).toEqual(rows);
  });

  it('keeps byte pieces from a source in chunks of at most the chunk size, each piece whole', async () => {
    // NDJSON pieces of `size` bytes: `{"s":"xxx…"}` lines of 100 bytes each.
    const piece = (size: number, tag: string) => {
      const line = (i: number) => `${JSON.stringify({ s: `${tag}${i}`.padEnd(91, 'x') })}\n`;
      expect(line(0).length).toBe(100);
      return { data: Buffer.from(Array.from({ length: size / 100 }, (_, i) => line(i)).join('')), rows: size / 100 };
    };
    const under = STAGING_CHUNK_BYTES - (STAGING_CHUNK_BYTES % 100) - 100; // just under a chunk, as ClickHouse cuts
    const quarter = Math.floor(STAGING_CHUNK_BYTES / 400) * 100 + 100; // a little over a quarter
    const pieces = [piece(under, 'a'), piece(under, 'b'), ...Array.from({ length: 6 }, (_, i) => piece(quarter, `q${i}`)), piece(under, 'c')];
    const w = await openStaging(db, runId, 'pieces');
    for (const p of pieces) await w.writeBytes(p.data, p.rows);
    const ref = await w.close();
    const { rows: sizes } = await db.pool.query<{ seq: number; bytes: number; rows: number }>(
      `select seq, octet_length(data) as bytes, rows from etl_blobs where run_id = $1 and name = 'pieces' order by seq`, [runId]);
    // Two pieces just under the size never share a chunk (that made chunks of twice the
    // size); a little over a quarter goes three to a chunk.
    expect(sizes.map((c) => c.bytes)).toEqual([under, under, 3 * quarter, 3 * quarter, under]);
    expect(sizes.every((c) => c.bytes <= STAGING_CHUNK_BYTES)).toBe(true);
    expect(ref).toMatchObject({ chunks: 5, rows: pieces.reduce((a, p) => a + p.rows, 0) });
    const bytes: Buffer[] = [];
    for await (const c of readStagedBytes(db, ref)) bytes.push(c);
    expect(Buffer.concat(bytes).equals(Buffer.concat(pieces.map((p) => p.data)))).toBe(true);
  });

  it('reads a missing chunk as null, and says the staged data is gone', async () => {
    expect(await readBlobBytes(db.pool, runId, "no'such\\name", 0)).toBeNull();
    const read = async () => {
      for await (const _ of readStagedBytes(db, { kind: 'staged', runId, name: 'gone', chunks: 2, rows: 2 })) {
        // consume
      }
    };
    await expect(read()).rejects.toThrow(/staged data gone of run .* is gone \(chunk 0\)/);
    // Every connection went back to the pool.
    await expect.poll(() => db.pool.waitingCount + (db.pool.totalCount - db.pool.idleCount)).toBe(0);
  });
});
