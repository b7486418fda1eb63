import { BigQuery } from '@google-cloud/bigquery';
import { noopAuthClient } from './bigquery-auth';
import type { Credential } from '../credentials';
import { NonRetryableError } from '../../lib/errors';

/**
 * BigQuery as a source: one query job, then its result pages read one at a time
 * (`autoPaginate: false`; with auto-pagination `maxResults` is a total, not a page size),
 * so memory holds one page whatever the table size.
 */
export function createBigQuery(a: { credential: Credential | null; apiEndpoint?: string; projectId?: string }): BigQuery {
  if (!a.credential) {
    // The sandbox emulator: no credentials, no metadata-server probing.
    return new BigQuery({ projectId: a.projectId ?? 'sandbox', apiEndpoint: a.apiEndpoint, authClient: noopAuthClient(a.projectId) });
  }
  const c = a.credential as { client_email?: string; private_key?: string; project_id?: string };
  if (!c.client_email || !c.private_key) {
    throw new NonRetryableError('the bigquery credential must be a service-account key (client_email, private_key)');
  }
  return new BigQuery({
    projectId: a.projectId ?? c.project_id,
    apiEndpoint: a.apiEndpoint,
    credentials: { client_email: c.client_email, private_key: c.private_key },
  });
}

/**
 * Yields the result's pages. A result that ends early fails instead of looking complete:
 * the rows received must add up to the result's `totalRows`, and a page whose body was not
 * a JSON object (the client then reports 0 rows and no next page, without an error) fails
 * the read. Both are retryable: a new query job usually reads the whole result.
 */
export async function* bigQueryPages(bq: BigQuery, sql: string, opts: {
  pageSize: number; location?: string; signal?: AbortSignal; timeoutMs?: number;
  /** Told the result's totalRows (from the first page's response), for live progress. */
  onTotal?(rows: number): void;
}): AsyncGenerator<Record<string, unknown>[]> {
  const [job] = await bq.createQueryJob({ query: sql, useLegacySql: false, location: opts.location });
  let pageToken: string | undefined;
  let received = 0;
  let total: number | undefined;
  let pages = 0;
  do {
    opts.signal?.throwIfAborted();
    const [rows, next, resp] = await job.getQueryResults({
      maxResults: opts.pageSize, pageToken, autoPaginate: false, timeoutMs: opts.timeoutMs ?? 60_000,
    });
    pages++;
    const body = resp as { totalRows?: unknown; jobComplete?: unknown } | string | null | undefined;
    if (!body || typeof body !== 'object') {
      throw new Error(`BigQuery result page ${pages} is not a JSON object (${typeof body === 'string' ? `${body.length} chars; cut off?` : String(body)}): the result would be truncated`);
    }
    if (body.jobComplete === false) throw new Error('BigQuery query job did not complete in time: no rows read');
    const t = Number(body.totalRows);
    if (!Number.isSafeInteger(t) || t < 0) throw new Error(`BigQuery result page ${pages} has no valid totalRows (${JSON.stringify(body.totalRows)})`);
    if (total === undefined) opts.onTotal?.(t);
    total ??= t;
    received += rows.length;
    yield rows as Record<string, unknown>[];
    pageToken = next?.pageToken;
  } while (pageToken);
  if (received !== total) {
    throw new Error(`BigQuery result ended early: ${received.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} rows received (totalRows)`);
  }
}

/** BigQuery's client wraps some values (TIMESTAMP, DATE, NUMERIC…) in objects with a
 *  `value`; rows leave the source as plain JSON. */
export function plainBigQueryRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = v && typeof v === 'object' && 'value' in v && Object.keys(v).length === 1 ? v.value : v;
  }
  return out;
}
