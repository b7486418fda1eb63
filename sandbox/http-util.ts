// Small helpers shared by the sandbox servers (BigQuery emulator, Yespo fake,
// ClickHouse fake). They use plain node:http so the sandbox needs no web
// framework and behaves like the real services at the wire level.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Listening {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/**
 * Listen on host:port (port 0 = any free port) and return the base URL.
 * Only loopback is allowed: these servers have no auth worth the name and
 * must never be reachable from outside the machine.
 */
export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  opts: { port?: number; host?: string },
): Promise<Listening> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`sandbox servers bind to loopback only, got host ${host}`);
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `http://${urlHost}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        // Clients keep sockets alive; without this close() waits for their
        // idle timeout and test teardown hangs.
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Read a request body as UTF-8, refusing bodies over `limit` bytes. */
export async function readBody(req: IncomingMessage, limit = 10 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendRawJson(res, status, JSON.stringify(body));
}

export function sendRawJson(res: ServerResponse, status: number, json: string): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=UTF-8',
    'content-length': Buffer.byteLength(json),
  });
  res.end(json);
}

/**
 * Append to a request log but keep only the newest `max` entries, so a
 * sandbox left running under `npm start` does not grow without bound.
 */
export function pushCapped<T>(log: T[], entry: T, max = 10_000): void {
  log.push(entry);
  if (log.length > max) log.splice(0, log.length - max);
}
