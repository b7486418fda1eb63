import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { isUtf8 } from 'node:buffer';
import { STAGING_CHUNK_BYTES } from '../chunk-size';
import type { Credential } from '../credentials';

/** ClickHouse as a source: JSONEachRow streamed and regrouped into batches. */
export function createClickHouse(a: { url: string; credential: Credential | null }): ClickHouseClient {
  const c = (a.credential ?? {}) as { username?: string; password?: string; database?: string };
  return createClient({
    url: a.url,
    username: c.username ?? 'default',
    password: c.password ?? '',
    database: c.database,
    request_timeout: 300_000,
    // Failed queries are our errors to report (redacted), not the client's to print.
    log: { level: ClickHouseLogLevel.OFF },
  });
}

export async function* clickHouseBatches(client: ClickHouseClient, sql: string, opts: {
  batchSize: number; signal?: AbortSignal;
}): AsyncGenerator<Record<string, unknown>[]> {
  const rs = await client.query({ query: sql, format: 'JSONEachRow', abort_signal: opts.signal });
  let batch: Record<string, unknown>[] = [];
  for await (const rows of rs.stream<Record<string, unknown>>()) {
    for (const row of rows) {
      batch.push(row.json());
      if (batch.length >= opts.batchSize) {
        yield batch;
        batch = [];
      }
    }
  }
  if (batch.length) yield batch;
}

/** The same result as raw JSON lines, unparsed: staging stores them as they came. */
export async function* clickHouseLines(client: ClickHouseClient, sql: string, opts: {
  batchSize: number; signal?: AbortSignal;
}): AsyncGenerator<string[]> {
  const rs = await client.query({ query: sql, format: 'JSONEachRow', abort_signal: opts.signal });
  let batch: string[] = [];
  for await (const rows of rs.stream()) {
    for (const row of rows) {
      batch.push(row.text);
      if (batch.length >= opts.batchSize) {
        yield batch;
        batch = [];
      }
    }
  }
  if (batch.length) yield batch;
}

/**
 * The same result as raw JSONEachRow bytes, cut at line ends into chunks of about
 * `chunkBytes`, with their row counts: no string per row, and staging stores the bytes as
 * they came. A line that is not a JSON object (ClickHouse reports an error met after the
 * response started as text appended to the body) fails the read.
 */
export async function* clickHouseChunks(client: ClickHouseClient, sql: string, opts: {
  chunkBytes?: number; signal?: AbortSignal;
}): AsyncGenerator<{ data: Buffer; rows: number }> {
  const chunkBytes = opts.chunkBytes ?? STAGING_CHUNK_BYTES;
  const query = `${sql.trim().replace(/;+\s*$/, '')}\nFORMAT JSONEachRow`;
  const { stream } = await client.exec({ query, abort_signal: opts.signal });
  let parts: Buffer[] = [];
  let size = 0;
  // Where the next cut is tried: a line longer than a chunk doubles it, so a huge line
  // is not copied again for every piece that arrives.
  let next = chunkBytes;
  const cut = (final: boolean) => {
    let all = parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
    if (final && all.length && all[all.length - 1] !== 0x0a) all = Buffer.concat([all, Buffer.from('\n')]);
    const end = all.lastIndexOf(0x0a) + 1;
    const rest = all.subarray(end);
    parts = rest.length ? [end ? Buffer.from(rest) : rest] : [];
    size = rest.length;
    next = end ? chunkBytes : 2 * all.length;
    let data = all.subarray(0, end);
    // ClickHouse passes String bytes through as they are; Postgres (rightly) refuses text
    // that is not UTF-8, so such bytes become U+FFFD, as a decoding client would make them.
    if (!isUtf8(data)) data = Buffer.from(data.toString('utf8'));
    return { data, rows: countRows(data) };
  };
  for await (const piece of stream as AsyncIterable<Buffer>) {
    parts.push(piece);
    size += piece.length;
    if (size >= next) {
      const c = cut(false);
      if (c.rows) yield c;
    }
  }
  if (size) {
    // JSONEachRow ends every row with a newline: a body that stops mid-line was cut off
    // (a dropped connection the HTTP layer did not report), not a short last row.
    // (Text that is not a row, e.g. an exception ClickHouse appended, is reported by countRows.)
    const all = Buffer.concat(parts, size);
    const start = all.lastIndexOf(0x0a, all.length - 2) + 1;
    if (all[all.length - 1] !== 0x0a && all[start] === 0x7b) {
      throw new Error(`ClickHouse response ended mid-row (${all.length - start} bytes after the last complete row): the result would be truncated`);
    }
    const c = cut(true);
    if (c.rows) yield c;
  }
}

function countRows(data: Buffer): number {
  let rows = 0;
  for (let s = 0; s < data.length;) {
    const e = data.indexOf(0x0a, s);
    if (data[s] !== 0x7b) {
      const text = data.toString('utf8', s, Math.min(e, s + 300)).trim();
      throw new Error(`ClickHouse sent a line that is not a row: ${text}`);
    }
    rows++;
    s = e + 1;
  }
  return rows;
}
