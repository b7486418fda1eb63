import { networkInterfaces } from 'node:os';
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PG_BASE, uid, waitFor } from './helpers';
import { freePort } from './services';
import { pipelines as registry } from '../workflows/index';

/**
 * The newcomer path, exactly: `npm start` on this machine's Postgres and Redis, open the
 * printed URL, log in with the printed token, trigger every pipeline through the API, see
 * them all succeed on sandbox data, then Ctrl-C and a clean exit. Its own database and
 * Redis db index keep it apart from other tests and from a developer's data.
 */
const dbName = uid('etl_start');
const REDIS_DB = 7;

afterAll(async () => {
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  await admin.query(`drop database if exists "${dbName}" with (force)`);
  await admin.end();
});

describe('npm start', () => {
  it('starts the platform, serves /etl, runs every registered pipeline on sandbox data, and stops on Ctrl-C', async () => {
    const port = await freePort();
    const queue = uid('q');
    const redisUrl = `redis://127.0.0.1:6379/${REDIS_DB}`;
    const child = spawn('npm', ['start', '--silent'], {
      env: { ...process.env, PORT: String(port), DATABASE_URL: `${PG_BASE}/${dbName}`, REDIS_URL: redisUrl, ETL_QUEUE: queue, ETL_API_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    try {
      const url = (await waitFor(() => /ETL platform is up:\s+(\S+)/.exec(out)?.[1], { timeoutMs: 90_000, what: `the URL in: ${out}` }));
      const token = /Log in with token:\s+(\S+)/.exec(out)![1];
      expect(url).toBe(`http://localhost:${port}/etl`);

      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script');
      const api = (path: string, init: RequestInit = {}) =>
        fetch(`http://localhost:${port}/api/etl${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      expect((await api('/pipelines', { headers: {} })).status).toBe(200);
      // Loopback only: the api is not reachable on the machine's other addresses.
      const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
      if (external) {
        expect(await fetch(`http://${external.address}:${port}/healthz`, { signal: AbortSignal.timeout(3_000) }).then((r) => r.status, () => 'refused'))
          .toBe('refused');
      }
      const { pipelines } = await (await api('/pipelines')).json() as { pipelines: { id: string; sandbox: boolean }[] };
      expect(pipelines.map((p) => p.id).sort()).toEqual(registry.map((p) => p.id).sort());
      expect(pipelines.every((p) => p.sandbox)).toBe(true);

      const runIds: string[] = [];
      for (const p of pipelines) {
        const r = await api(`/pipelines/${p.id}/trigger`, { method: 'POST', body: '{}' });
        expect(r.status).toBe(202);
        runIds.push(((await r.json()) as { runId: string }).runId);
      }
      for (const runId of runIds) {
        const run = await waitFor(async () => {
          const { run } = await (await api(`/runs/${runId}`)).json() as { run: { status: string; pipelineId: string; error: string | null } };
          return ['succeeded', 'failed', 'cancelled'].includes(run.status) ? run : null;
        }, { timeoutMs: 90_000, intervalMs: 250, what: `run ${runId}` });
        expect(run.status, `${run.pipelineId}: ${run.error}`).toBe('succeeded');
      }
      const redis = new Redis(redisUrl);
      expect(await redis.hlen('cache:yespo:OVAGO:contacts')).toBeGreaterThan(1_000);
      expect(JSON.parse((await redis.get('cache:ch:top_dests'))!)).toHaveLength(100);
      await redis.flushdb();
      redis.disconnect();
    } finally {
      process.kill(-child.pid!, 'SIGINT');
    }
    // Ctrl-C reaches the whole process group, as in a terminal: npm itself may end by the
    // signal; what matters is that our script stopped everything and said so.
    const { code, signal } = await exited;
    expect(code === 0 || signal === 'SIGINT', `code ${code} signal ${signal}`).toBe(true);
    await waitFor(() => out.includes('stopped.'), { timeoutMs: 30_000, what: `"stopped." in: ${out.slice(-2000)}` });
    await waitFor(async () => fetch(`http://localhost:${port}/healthz`).then(() => false, () => true), { what: 'the api to be gone' });
  }, 180_000);
});
