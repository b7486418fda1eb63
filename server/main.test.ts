import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, REDIS_URL, uid, waitFor } from '../test/helpers';

/** The api entry point as a process: starts, serves, and exits 0 on SIGTERM even with an open SSE stream. */

let db: Awaited<ReturnType<typeof freshDatabase>>;
let child: ChildProcess | undefined;
const TOKEN = `main-test-token-${uid('t')}`;
let output = '';

const freePort = () => new Promise<number>((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address() as { port: number };
    s.close(() => resolve(port));
  });
});

beforeAll(async () => {
  db = await freshDatabase([{ id: 'demo', workflow: 'demo', description: 'demo', cron: '0 * * * *', timezone: 'UTC', config: {} }]);
});
afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await db?.drop();
});

describe('server/main.ts', () => {
  it('serves the API and exits 0 on SIGTERM without logging the token', async () => {
    const port = await freePort();
    child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
      env: { ...process.env, DATABASE_URL: db.url, REDIS_URL, PORT: String(port), ETL_API_TOKEN: TOKEN, ETL_QUEUE: uid('q'), LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += String(d)));
    child.stderr!.on('data', (d) => (output += String(d)));
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/healthz`)).ok, { timeoutMs: 30_000, what: 'the api to listen' });

    const list = await fetch(`${base}/api/etl/pipelines`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { pipelines: { id: string }[] }).pipelines.map((p) => p.id)).toEqual(['demo']);
    expect((await fetch(`${base}/api/etl/pipelines`)).status).toBe(401);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    // The token is never accepted in a URL (it would land in access logs); the header is.
    expect((await fetch(`${base}/api/etl/events?token=${TOKEN}`)).status).toBe(401);
    const sse = await fetch(`${base}/api/etl/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(sse.status).toBe(200);
    const reader = sse.body!.getReader();
    await reader.read();

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const t0 = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(output).toContain('api listening');
    expect(output).not.toContain(TOKEN);
  });
});
