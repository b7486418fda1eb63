import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { recordBeat, workersSeen } from '../lib/worker-presence';
import { createApp } from '../server/app';
import { defaultRegistry } from '../workflows';
import { createEngine } from '../workflows/engine/engine';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

/**
 * The worker's health can fail: the real worker process (worker/main.ts) talks to Redis
 * through a TCP proxy this test cuts; the container's healthcheck command (as in
 * docker-compose.yml) turns unhealthy within a minute and healthy again once Redis is
 * reachable. Default heartbeat settings throughout (10 s beats, stale after 30 s).
 */

/** A plain TCP forwarder to Redis whose connections the test can cut and restore. */
class TcpProxy {
  private server?: Server;
  private sockets = new Set<Socket>();
  port = 0;
  constructor(private target: { host: string; port: number }) {}
  async listen(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }
  /** Refuses new connections and drops every open one. */
  async cut(): Promise<void> {
    const closed = new Promise((r) => this.server?.close(r));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, { healthcheck: { test: string[] } }> };
const healthcheckCmd = compose.services['marketing-worker'].healthcheck.test;

let db: Awaited<ReturnType<typeof freshDatabase>>;
let proxy: TcpProxy;
let worker: ChildProcess | undefined;
let dir: string;
let output = '';
const queue = uid('q');

/** The compose healthcheck (`node dist/healthcheck.mjs`), run from source: exit code and its line. */
function healthcheck(): Promise<{ code: number; line: string }> {
  expect(healthcheckCmd).toEqual(['CMD', 'node', 'dist/healthcheck.mjs']);
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/healthcheck.ts'], {
      env: { ...process.env, WORKER_HEARTBEAT_FILE: path.join(dir, 'heartbeat') }, timeout: 15_000,
    }, (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, line: stdout.trim() }));
  });
}

beforeAll(async () => {
  db = await freshDatabase();
  dir = mkdtempSync(path.join(tmpdir(), 'etl-health-'));
  const target = new URL(REDIS_URL);
  proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
  await proxy.listen();
});
afterAll(async () => {
  if (worker && worker.exitCode === null) worker.kill('SIGKILL');
  await proxy?.cut().catch(() => {});
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('worker health', () => {
  it('turns unhealthy within a minute of losing Redis, and healthy again after; /readyz reports it', async () => {
    worker = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
      env: {
        ...process.env, DATABASE_URL: db.url, REDIS_URL: `redis://127.0.0.1:${proxy.port}`, ETL_QUEUE: queue,
        WORKER_HEARTBEAT_FILE: path.join(dir, 'heartbeat'), LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout!.on('data', (d) => (output += String(d)));
    worker.stderr!.on('data', (d) => (output += String(d)));

    expect((await healthcheck()).code).toBe(1); // no heartbeat yet
    const first = await waitFor(async () => {
      const r = await healthcheck();
      return r.code === 0 ? r : null;
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'the first healthy heartbeat' });
    expect(first.line).toMatch(/^healthy: heartbeat \d+ s ago$/);

    // The api sees the worker (through Redis directly, not the proxy).
    const redis = new Redis(REDIS_URL);
    const engine = createEngine({ db, redis, queueName: queue, registry: defaultRegistry(), log: silentLog });
    const app = createApp({ db, redis, engine, log: silentLog, config: { sessionCookie: 'mc_sess' } });
    try {
      const ready = await (await app.request('/readyz')).json() as { ok: boolean; workers: { alive: number; ids: string[]; lastSeenAt: string } };
      expect(ready.ok).toBe(true);
      expect(ready.workers.alive).toBe(1);
      expect(ready.workers.ids[0]).toMatch(new RegExp(`:${worker.pid}$`));
      // A beat older than a minute does not count as alive, but is "last seen".
      await recordBeat(redis, `${queue}-old`, { id: 'gone:1', host: 'gone', pid: 1, startedAt: new Date(0).toISOString(), at: new Date(Date.now() - 61_000).toISOString(), active: 0 });
      const old = await workersSeen(redis, `${queue}-old`);
      expect(old).toMatchObject({ alive: 0, ids: [] });
      expect(Date.now() - Date.parse(old.lastSeenAt!)).toBeGreaterThan(60_000);
      await redis.del(`etl:${queue}-old:workers`, `etl:${queue}-old:worker:gone:1`);
    } finally {
      await engine.close();
      redis.disconnect();
    }

    // Cut every connection between the worker and Redis.
    const cutAt = Date.now();
    await proxy.cut();
    const down = await waitFor(async () => {
      const r = await healthcheck();
      return r.code === 1 ? r : null;
    }, { timeoutMs: 60_000, intervalMs: 2_000, what: 'the healthcheck to fail' });
    const unhealthyAfterMs = Date.now() - cutAt;
    expect(unhealthyAfterMs).toBeLessThan(60_000);
    expect(down.line).toMatch(/^unhealthy: last healthy heartbeat \d+ s ago; redis down/);
    expect(worker.exitCode).toBeNull();

    // Redis is back: healthy again at the next good beat.
    const backAt = Date.now();
    await proxy.listen();
    await waitFor(async () => (await healthcheck()).code === 0, { timeoutMs: 40_000, intervalMs: 1_000, what: 'the healthcheck to pass again' });
    const healthyAfterMs = Date.now() - backAt;
    expect(output).toContain('worker unhealthy: heartbeat withheld');
    expect(output).toContain('worker healthy again');
    process.stdout.write(`worker health: unhealthy ${Math.round(unhealthyAfterMs / 1000)} s after the cut, healthy ${Math.round(healthyAfterMs / 1000)} s after Redis returned\n`);
  }, 150_000);
});
