import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
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
