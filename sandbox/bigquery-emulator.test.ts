// Drives the emulator with the official @google-cloud/bigquery v8 client, so a
// client upgrade that changes the wire protocol shows up here first.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BigQuery, BigQueryTimestamp } from '@google-cloud/bigquery';
import { startBigQueryEmulator, type BigQueryEmulator, type SandboxTable } from './bigquery-emulator.js';
import { noopAuthClient } from '../steps/sources/bigquery-auth.js';
import { bigQueryPages } from '../steps/sources/bigquery.js';
import { limitFromSql, tableNameFromSql } from './bigquery-wire.js';

const BASE_MS = Date.UTC(2024, 0, 1, 12, 0, 0);

const countries: SandboxTable = {
  schema: [
    { name: 'id', type: 'INTEGER' },
    { name: 'code', type: 'STRING' },
    { name: 'ratio', type: 'FLOAT' },
    { name: 'active', type: 'BOOLEAN' },
    { name: 'updated_at', type: 'TIMESTAMP' },
    { name: 'note', type: 'STRING' },
  ],
  rowCount: 25_000,
  row: (i) => [
    i,
    `C${i}`,
    i / 4,
    i % 2 === 0,
    new Date(BASE_MS + i * 1000 + 123),
    i % 10 === 0 ? null : 'quote " and \\ and ünïcode',
  ],
};

let emu: BigQueryEmulator;
let bq: BigQuery;
let authCalls = 0;

beforeAll(async () => {
  // Belt and braces: if the auth path ever regressed to credential discovery,
  // google-auth-library must not probe the (non-loopback) metadata server.
  vi.stubEnv('METADATA_SERVER_DETECTION', 'none');
  emu = await startBigQueryEmulator({ tables: { countries } });
  const auth = noopAuthClient('p');
  const original = auth.getRequestHeaders.bind(auth);
  auth.getRequestHeaders = async (url?: string | URL) => {
    authCalls++;
    return original(url);
  };
  bq = new BigQuery({ projectId: 'p', apiEndpoint: emu.url, authClient: auth, maxRetries: 0 });
});

afterAll(async () => {
  await emu?.close();
  vi.unstubAllEnvs();
});

describe('BigQuery emulator with the real client', () => {
  it('bigQueryPages reports the result\'s totalRows once, for live progress', async () => {
    const totals: number[] = [];
    let rows = 0;
    for await (const page of bigQueryPages(bq, 'SELECT * FROM `bdi-chat-va.n8n_oss.countries`', { pageSize: 10_000, onTotal: (n) => totals.push(n) })) {
      rows += page.length;
    }
    expect(rows).toBe(25_000);
    expect(totals).toEqual([25_000]);
  });

  it('pages manually through a query job with maxResults', async () => {
    const [job] = await bq.createQueryJob({ query: 'SELECT * FROM `bdi-chat-va.n8n_oss.countries`' });
    let pageToken: string | undefined;
    let seen = 0;
    let pages = 0;
    let mismatches = 0;
    do {
      const [rows, next, resp] = await job.getQueryResults({ maxResults: 1000, pageToken, autoPaginate: false });
      expect(resp?.totalRows).toBe('25000');
      for (const row of rows) {
        const i = seen++;
        // Compared as one object, and only every 97th row in full detail:
        // 25,000 x 7 expect() calls alone take seconds on a loaded 2-core box.
        if (row.id !== i) mismatches++;
        if (i % 97 !== 0) continue;
        expect(row.updated_at).toBeInstanceOf(BigQueryTimestamp);
        expect({ ...row, updated_at: row.updated_at.value }).toEqual({
          id: i,
          code: `C${i}`,
          ratio: i / 4,
          active: i % 2 === 0,
          updated_at: new Date(BASE_MS + i * 1000 + 123).toISOString(),
          note: i % 10 === 0 ? null : 'quote " and \\ and ünïcode',
        });
      }
      expect(rows.length).toBeLessThanOrEqual(1000);
      pages++;
      pageToken = next?.pageToken ?? undefined;
    } while (pageToken);
    expect(seen).toBe(25_000);
    expect(mismatches).toBe(0); // every row arrived, in order
    expect(pages).toBe(25);
    expect(authCalls).toBeGreaterThan(0); // our no-op client is the one in use
    const paths = emu.requests.map((r) => `${r.method} ${r.path}`);
    expect(paths).toContain('POST /bigquery/v2/projects/p/jobs');
    expect(paths).toContain(`GET /bigquery/v2/projects/p/queries/${job.id}`);
  });

  it('runs bq.query (jobs.query + auto-paginated getQueryResults) with LIMIT', async () => {
    const before = emu.requests.length;
    const [rows] = await bq.query('SELECT id, code FROM bdi-chat-va.n8n_oss.countries LIMIT 12345');
    expect(rows).toHaveLength(12_345);
    expect(rows[12_344].id).toBe(12_344);
    const mine = emu.requests.slice(before);
    expect(mine[0]).toMatchObject({ method: 'POST', path: '/bigquery/v2/projects/p/queries' });
    // 12,345 rows at 10,000 per page: the first page inline, one more by token.
    expect(mine.filter((r) => r.method === 'GET' && r.search.includes('pageToken='))).toHaveLength(1);
  });

  it('honours startIndex and reports the job as DONE', async () => {
    const [job] = await bq.createQueryJob({ query: 'SELECT * FROM `x`.`y`.`countries` LIMIT 100' });
    const [rows, next] = await job.getQueryResults({ startIndex: '95', maxResults: 10, autoPaginate: false });
    expect(rows.map((r) => r.id)).toEqual([95, 96, 97, 98, 99]);
    expect(next).toBeNull();
    const [meta] = await job.getMetadata();
    expect(meta.status.state).toBe('DONE');
  });

  it('answers an unknown table with a BigQuery-shaped 404', async () => {
    await expect(bq.query('SELECT * FROM `bdi-chat-va.n8n_oss.nope`')).rejects.toMatchObject({
      code: 404,
      message: expect.stringContaining('bdi-chat-va.n8n_oss.nope'),
    });
    const res = await fetch(`${emu.url}/bigquery/v2/projects/p/queries/missing-job`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 404, errors: [{ reason: 'notFound' }] } });
  });

  it('renders TIMESTAMP per formatOptions, as BigQuery does', async () => {
    const post = (formatOptions: unknown) =>
      fetch(`${emu.url}/bigquery/v2/projects/p/queries`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'SELECT * FROM countries LIMIT 1' /* columns are not projected */, formatOptions }),
      }).then((r) => r.json() as Promise<{ rows: { f: { v: string }[] }[] }>);
    const ms = BASE_MS + 123;
    expect((await post({ useInt64Timestamp: true })).rows[0]?.f[4]?.v).toBe(String(ms * 1000));
    expect((await post(undefined)).rows[0]?.f[4]?.v).toBe(String(ms / 1000));
    expect((await post({ timestampOutputFormat: 'ISO8601_STRING' })).rows[0]?.f[4]?.v).toBe(
      '2024-01-01T12:00:00.123000Z',
    );
  });
});

describe('SQL helpers', () => {
  it('finds the table name after FROM', () => {
    expect(tableNameFromSql('SELECT * FROM `bdi-chat-va.n8n_oss.countries` WHERE x')).toBe('countries');
    expect(tableNameFromSql('select a\nfrom   ds.t1 t')).toBe('t1');
    expect(tableNameFromSql('SELECT 1 /* FROM hidden */ FROM `a`.`b`.`c`')).toBe('c');
    expect(tableNameFromSql('SELECT 1')).toBeNull();
    expect(limitFromSql('SELECT * FROM t LIMIT 10;')).toBe(10);
    expect(limitFromSql('SELECT * FROM t')).toBeNull();
  });
});
