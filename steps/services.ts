import type { ClickHouseClient } from '@clickhouse/client';
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import type { Database } from '../db/client';
import type { Logger } from '../lib/logger';
import { createCredentials, requireCredential, type Credential, type CredentialSource } from './credentials';
import { NonRetryableError } from '../lib/errors';
// The source clients are heavy (the BigQuery client alone is tens of MB of heap): they
// load on first use, so a worker that only runs Yespo never loads them.
const bigQuerySource = () => import('./sources/bigquery');
const clickHouseSource = () => import('./sources/clickhouse');

/**
 * What step code gets through `ctx.services`: clients and helpers built once per worker
 * process. Step code never imports pg, ioredis or a source's client itself.
 *
 * Sandbox: a source whose credential is configured nowhere, while a sandbox URL for it
 * is set (npm start does that), reads from the built-in local emulator instead, and says
 * so (`sandbox: true` in step outputs, the API and the page).
 */
export type SourceKind = 'bigquery' | 'clickhouse';

export interface QuerySource {
  sandbox: boolean;
  /** The result as batches of JSON lines (one row each). */
  lines(sql: string, opts: { pageSize: number; signal?: AbortSignal; location?: string; onTotal?(rows: number): void }): AsyncGenerator<string[]>;
  /** The same as NDJSON bytes (whole lines) with row counts, where the source can give
   *  them without a string per row. */
  chunks?(sql: string, opts: { signal?: AbortSignal }): AsyncGenerator<{ data: Buffer; rows: number }>;
}

export interface Services {
  config: Config;
  db: Database;
  redis: Redis;
  log: Logger;
  credentials: CredentialSource;
  querySource(kind: SourceKind, credentialName: string, opts?: { projectId?: string }): Promise<QuerySource>;
  yespo(brand: string): Promise<{ baseUrl: string; apiKey: string; sandbox: boolean }>;
  /** True when this credential is missing and a sandbox stands in for its source. */
  isSandboxed(credentialName: string, kind: SourceKind | 'yespo'): Promise<boolean>;
  close(): Promise<void>;
}

export const SANDBOX_YESPO_KEY = 'sandbox-yespo-key';

export function createServices(a: {
  config: Config; db: Database; redis: Redis; log: Logger; env?: Record<string, string | undefined>; credentials?: CredentialSource;
}): Services {
  const { config } = a;
  const credentials = a.credentials ?? createCredentials({
    serviceUrl: config.CRED_SERVICE_URL, serviceToken: config.CRED_SERVICE_TOKEN, env: a.env ?? process.env,
  });
  const sandboxUrl = (kind: SourceKind | 'yespo') =>
    kind === 'bigquery' ? config.SANDBOX_BIGQUERY_URL : kind === 'clickhouse' ? config.SANDBOX_CLICKHOUSE_URL : config.SANDBOX_YESPO_URL;
  const clickhouses = new Map<string, ClickHouseClient>();

  async function credentialOrSandbox(name: string, kind: SourceKind | 'yespo'): Promise<{ credential: Credential | null; sandbox: boolean }> {
    const credential = await credentials.resolve(name);
    if (credential) return { credential, sandbox: false };
    if (sandboxUrl(kind)) return { credential: null, sandbox: true };
    return { credential: await requireCredential(credentials, name), sandbox: false };
  }

  return {
    ...a,
    credentials,
    async isSandboxed(name, kind) {
      return !!sandboxUrl(kind) && !(await credentials.resolve(name).catch(() => null));
    },
    async querySource(kind, credentialName, opts = {}) {
      const { credential, sandbox } = await credentialOrSandbox(credentialName, kind);
      if (kind === 'bigquery') {
        const { bigQueryPages, createBigQuery, plainBigQueryRow } = await bigQuerySource();
        const bq = createBigQuery({ credential, projectId: opts.projectId, apiEndpoint: sandbox ? config.SANDBOX_BIGQUERY_URL : config.BIGQUERY_API_ENDPOINT });
        return {
          sandbox,
          async *lines(sql, o) {
            for await (const page of bigQueryPages(bq, sql, o)) yield page.map((r) => JSON.stringify(plainBigQueryRow(r)));
          },
        };
      }
      const url = sandbox ? config.SANDBOX_CLICKHOUSE_URL : config.CLICKHOUSE_URL;
      if (!url) throw new NonRetryableError('CLICKHOUSE_URL is not set');
      const { clickHouseChunks, clickHouseLines, createClickHouse } = await clickHouseSource();
      const cacheKey = `${url}|${JSON.stringify(credential)}`;
      let client = clickhouses.get(cacheKey);
      if (!client) clickhouses.set(cacheKey, (client = createClickHouse({ url, credential })));
      const ch = client;
      return {
        sandbox,
        lines: (sql, o) => clickHouseLines(ch, sql, { batchSize: o.pageSize, signal: o.signal }),
        chunks: (sql, o) => clickHouseChunks(ch, sql, { signal: o.signal }),
      };
    },
    async yespo(brand) {
      const name = `yespo/${brand}`;
      const { credential, sandbox } = await credentialOrSandbox(name, 'yespo');
      if (sandbox) return { baseUrl: config.SANDBOX_YESPO_URL!, apiKey: SANDBOX_YESPO_KEY, sandbox };
      const apiKey = (credential as { apiKey?: unknown }).apiKey;
      if (typeof apiKey !== 'string' || apiKey === '') throw new NonRetryableError(`the ${name} credential has no apiKey`);
      return { baseUrl: config.YESPO_BASE_URL, apiKey, sandbox };
    },
    async close() {
      await Promise.allSettled([...clickhouses.values()].map((c) => c.close()));
    },
  };
}
