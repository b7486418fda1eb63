import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBigQueryEmulator, type BigQueryEmulator } from '../../sandbox/bigquery-emulator';
import { sandboxBigQueryTables } from '../../sandbox/data';
import { bigQueryPages, createBigQuery } from './bigquery';
import { clickHouseChunks, createClickHouse } from './clickhouse';

/**
 * No silent truncation: a source that ends early fails the read instead of yielding a
 * shorter result. BigQuery through the official client against the emulator, behind a
 * proxy that spoils one page; ClickHouse through the official client against a server
 * that cuts its body.
 */
let bq: BigQueryEmulator;
let proxy: Server;
let proxyUrl: string;
/** How the proxy spoils the second result page (GET …/queries/JOB?pageToken=…). */
let spoil: 'none' | 'not-json' | 'no-token' = 'none';

const listen = async (srv: Server) => {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  bq = await startBigQueryEmulator({ tables: sandboxBigQueryTables({ projects: 2_500 }) });
  const target = new URL(bq.url);
  proxy = createServer((req, res) => {
    const up = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      const chunks: Buffer[] = [];
      upRes.on('data', (c) => chunks.push(c));
      upRes.on('end', () => {
        let body = Buffer.concat(chunks).toString();
        if (req.method === 'GET' && req.url?.includes('pageToken=')) {
          if (spoil === 'not-json') body = body.slice(0, body.length / 2);
          if (spoil === 'no-token') body = JSON.stringify({ ...JSON.parse(body), pageToken: undefined });
        }
        const headers = { ...upRes.headers };
        delete headers['content-length'];
        delete headers['transfer-encoding'];
        res.writeHead(upRes.statusCode!, headers);
        res.end(body);
      });
    });
    req.pipe(up);
  });
  proxyUrl = await listen(proxy);
});
afterAll(async () => {
  await new Promise((r) => proxy?.close(r));
  await bq?.close();
});

async function readAll(sql: string): Promise<number> {
  const client = createBigQuery({ credential: null, apiEndpoint: proxyUrl, projectId: 'p' });
  let n = 0;
  for await (const page of bigQueryPages(client, sql, { pageSize: 1_000 })) n += page.length;
  return n;
}
const SQL = 'SELECT * FROM `bdi-chat-va.n8n_oss.projects`';

describe('BigQuery pages', () => {
  it('reads every page when nothing is wrong', async () => {
    spoil = 'none';
    expect(await readAll(SQL)).toBe(2_500);
  });

  it('a page whose body is not valid JSON fails the read (the client alone reports 0 rows and the end)', async () => {
    spoil = 'not-json';
    await expect(readAll(SQL)).rejects.toThrow(/result page 2 is not a JSON object.*truncated/);
  });

  it('a result that stops before totalRows fails the read', async () => {
    spoil = 'no-token';
    await expect(readAll(SQL)).rejects.toThrow('BigQuery result ended early: 2,000 of 2,500 rows received (totalRows)');
  });
});

describe('ClickHouse stream', () => {
  let server: Server;
  let url: string;
  let respond: (res: ServerResponse) => void = () => {};
  beforeAll(async () => {
    server = createServer((_req: IncomingMessage, res) => respond(res));
    url = await listen(server);
  });
  afterAll(async () => new Promise((r) => server?.close(r)));

  async function read(): Promise<number> {
    const client = createClickHouse({ url, credential: null });
    try {
      let n = 0;
      for await (const c of clickHouseChunks(client, 'SELECT 1', { chunkBytes: 64 })) n += c.rows;
      return n;
    } finally {
      await client.close();
    }
  }
  const rows = (n: number) => Array.from({ length: n }, (_, i) => `{"id":${i},"name":"row ${i}"}\n`).join('');

  it('reads a body that ends with a complete row', async () => {
    respond = (res) => res.end(rows(50));
    expect(await read()).toBe(50);
  });

  it('a body that ends mid-row fails the read', async () => {
    respond = (res) => res.end(`${rows(50)}{"id":50,"na`);
    await expect(read()).rejects.toThrow(/ended mid-row .*truncated/);
  });

  it('a connection dropped mid-body fails the read', async () => {
    respond = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(rows(50));
      setTimeout(() => res.socket?.destroy(), 20);
    };
    await expect(read()).rejects.toThrow();
  });

  it('an exception appended to the body fails the read with its text', async () => {
    respond = (res) => res.end(`${rows(5)}Code: 241. DB::Exception: Memory limit exceeded`);
    await expect(read()).rejects.toThrow(/not a row: Code: 241/);
  });
});
