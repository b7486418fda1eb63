// A tiny "ClickHouse-like" HTTP server: the sandbox source for `npm start`
// when no CLICKHOUSE_URL is configured. It speaks just what @clickhouse/client
// v1 uses for reads: `GET /ping`, and `POST /?query_id=...` with the SQL in the
// body ending in `FORMAT JSONEachRow` (checked against client 1.23). Which rows
// a query returns is up to the caller's resolver; this is not a SQL engine.
// Tests that need real SQL semantics use the real server (.ci/clickhouse.sh).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGzip } from 'node:zlib';
import type { Writable } from 'node:stream';
import { listen, pushCapped, readBody } from './http-util.js';

export type ClickHouseRows = Iterable<Record<string, unknown>> | AsyncIterable<Record<string, unknown>>;

export interface ClickHouseFake {
  /** Pass as `url` to createClient. */
  url: string;
  close(): Promise<void>;
  /** Newest 10,000 queries, SQL without the trailing FORMAT clause. */
  requests: { sql: string; format: string; status: number }[];
}

export async function startClickHouseFake(opts: {
  port?: number;
  /** Rows for a query (FORMAT clause already stripped), or null for "unknown table". */
  resolve(sql: string): ClickHouseRows | null;
}): Promise<ClickHouseFake> {
  const requests: ClickHouseFake['requests'] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://clickhouse');
    // ClickHouse answers both /ping and a bare GET / with "Ok.".
    if (req.method === 'GET' && (url.pathname === '/ping' || (url.pathname === '/' && !url.searchParams.has('query')))) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=UTF-8' });
      return void res.end('Ok.\n');
    }
    if (url.pathname !== '/' || (req.method !== 'POST' && req.method !== 'GET')) {
      return sendException(res, 404, 0, `There is no handle ${url.pathname}`, 'UNKNOWN');
    }

    // Like ClickHouse: the query is the `query` parameter followed by the body.
    const body = req.method === 'POST' ? await readBody(req) : '';
    const full = [url.searchParams.get('query') ?? '', body].filter(Boolean).join('\n');
    const m = /\s*\bFORMAT\s+(\w+)\s*;?\s*$/i.exec(full);
    const format = m?.[1] ?? url.searchParams.get('default_format') ?? 'TabSeparated';
    const sql = (m ? full.slice(0, m.index) : full).trim();
    const queryId = url.searchParams.get('query_id') ?? cryptoRandomId();
    const log = (status: number) => pushCapped(requests, { sql, format, status });

    if (format !== 'JSONEachRow') {
      log(400);
      return sendException(res, 400, 73, `Format ${format} is not supported by the sandbox fake`, 'UNKNOWN_FORMAT');
    }
    const rows = opts.resolve(sql);
    if (rows === null) {
      log(404);
      return sendException(res, 404, 60, `Table for query "${sql.slice(0, 200)}" doesn't exist`, 'UNKNOWN_TABLE');
    }
    log(200);

    const gzip =
      url.searchParams.get('enable_http_compression') === '1' && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
    res.writeHead(200, {
      'content-type': 'application/x-ndjson; charset=UTF-8',
      'x-clickhouse-format': 'JSONEachRow',
      'x-clickhouse-query-id': queryId,
      'x-clickhouse-timezone': 'UTC',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    let out: Writable = res;
    if (gzip) {
      const z = createGzip();
      z.pipe(res);
      out = z;
    }
    try {
      await writeRows(out, rows, res);
    } catch (err) {
      // Headers are gone; ClickHouse reports a mid-stream failure by appending
      // the exception text to the body, which the client turns into an error.
      out.write(`Code: 1001. DB::Exception: ${(err as Error).message}. (STD_EXCEPTION)\n`);
    }
    out.end();
  };

  const listening = await listen((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      sendException(res, 500, 1001, (err as Error).message, 'STD_EXCEPTION');
    });
  }, { port: opts.port });

  return { url: listening.url, close: () => listening.close(), requests };
}

/**
 * Newline-delimited JSON, batched into ~64 KB writes; waits for 'drain' so a
 * slow reader (or a 10M-row resolver) never buffers the whole result here.
 */
async function writeRows(out: Writable, rows: ClickHouseRows, res: ServerResponse): Promise<void> {
  let batch = '';
  try {
    for await (const row of rows) {
      if (res.destroyed) return; // client went away: stop pulling rows
      batch += JSON.stringify(row) + '\n';
      if (batch.length >= 65_536) {
        const ok = out.write(batch);
        batch = '';
        if (!ok) await drained(out, res);
      }
    }
  } finally {
    // Rows produced before a resolver failure are still sent, as ClickHouse would.
    if (batch && !res.destroyed) out.write(batch);
  }
}

function drained(out: Writable, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      res.off('close', done);
      resolve();
    };
    out.once('drain', done);
    res.once('close', done);
  });
}

/** An error as ClickHouse sends it; @clickhouse/client parses code and type from the text. */
function sendException(res: ServerResponse, status: number, code: number, message: string, type: string): void {
  const text = `Code: ${code}. DB::Exception: ${message}. (${type}) (version sandbox-fake)\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=UTF-8',
    'x-clickhouse-exception-code': String(code),
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function cryptoRandomId(): string {
  return globalThis.crypto.randomUUID();
}
