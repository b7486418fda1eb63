import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import { Redis } from 'ioredis';
import { createLogger } from '../lib/logger';
import { createApp } from '../server/app';
import { createEventHub } from '../server/sse';
import { eventsChannel } from '../workflows/engine/events';
import { freshDatabase, uid } from '../test/helpers';
import { demoWorkflow } from '../test/fixtures/demo';
import { createRegistry } from '../workflows/engine/define';
import { createEngine } from '../workflows/engine/engine';
import { now, percentile, pool, type BenchRow } from './util';

/**
 * Read latency of the HTTP API under load: the run drilldown of a 50-step run (150
 * attempts) and the pipelines list (20 pipelines with 100 runs of history each), each
 * hammered by 50 concurrent keep-alive connections over a real socket, against a real
 * Postgres and Redis, with the app built as server/main.ts builds it (pool of 10, bearer
 * auth; one pass with the session cookie, whose check is a Redis GET).
 *
 * With 50 requests always in flight (closed loop), latency is 50 / throughput (Little's
 * law): a p99 of 20 ms needs about 2,500 req/s. So two more passes say what a request
 * costs: one connection (the service time, no queueing), and an open loop at a steady
 * 100 req/s over the same 50 connections, timed from when each request was due.
 *
 * The closed-loop passes use wrk (Debian's `wrk`, a C load generator) when it is
 * installed: a Node.js generator parsing 40 KB responses at 7k req/s needs a core of its
 * own, and on a 2-core box its queueing showed up as server latency (p99 20 ms with it,
 * 9 ms with wrk for the same server). Without wrk, or with BENCH_API_LOADGEN=child|inproc,
 * the Node.js generator runs them, in a child process or in the server's own. The open
 * loop (a steady rate) always uses the Node.js generator (wrk has no rate option).
 */
const PG = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const REQUESTS = Number(process.env.BENCH_API_REQUESTS ?? 5_000);
const WRK = '/usr/bin/wrk';
const LOADGEN_ENV = process.env.BENCH_API_LOADGEN;
const LOADGEN = LOADGEN_ENV === 'inproc' ? 'inproc' : LOADGEN_ENV === 'child' || !existsSync(WRK) ? 'child' : 'wrk';
const WRK_SECONDS = Number(process.env.BENCH_API_WRK_SECONDS ?? 5);
const CONNECTIONS = 50;
const RUNS_PER_PIPELINE = 100;
const OPEN_RATE = 100;
const WARMUP = 500;
/** Each target stops issuing requests after this long, so a slow build cannot hang the bench. */
const MAX_MS = 60_000;

interface Target {
  name: string; path: string; headers: Record<string, string>; connections: number; requests: number;
  /** Open loop: requests are due at this rate (req/s) and timed from when they were due. */
  rate?: number;
}
interface LoadResult {
  name: string; connections: number; rate?: number; n: number; errors: number; p50: number; p99: number; max: number; rps: number; bytes: number;
  loadgen: string;
}

function get(url: string, headers: Record<string, string>, agent: http.Agent): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** GETs of one target with `connections` in flight; latency is request start to last body byte. */
async function hammer(base: string, t: Target): Promise<LoadResult> {
  // fifo: every socket stays busy, so none idles into the server's 5 s keep-alive timeout
  // and gets reused just as the server closes it (an ECONNRESET that is no API error).
  const agent = new http.Agent({ keepAlive: true, maxSockets: t.connections, scheduling: 'fifo' });
  const url = base + t.path;
  try {
    await pool(WARMUP, t.connections, async () => void (await get(url, t.headers, agent)));
    const lat: number[] = [];
    let errors = 0;
    let bytes = 0;
    const t0 = now();
    const deadline = t0 + MAX_MS;
    await pool(t.requests, t.connections, async (i) => {
      if (now() > deadline) return;
      const due = t.rate ? t0 + (i * 1000) / t.rate : now();
      if (due > now()) await new Promise((resolve) => setTimeout(resolve, due - now()));
      const s = due;
      try {
        const r = await get(url, t.headers, agent);
        lat.push(now() - s);
        if (r.status === 200) bytes = r.bytes;
        else errors++;
      } catch {
        errors++;
      }
    });
    const secs = (now() - t0) / 1000;
    return {
      name: t.name, connections: t.connections, rate: t.rate, n: lat.length, errors, bytes, loadgen: LOADGEN === 'inproc' ? 'inproc' : 'node child',
      p50: percentile(lat, 50), p99: percentile(lat, 99), max: percentile(lat, 100), rps: lat.length / secs,
    };
  } finally {
    agent.destroy();
  }
}

/** One closed-loop target through wrk: `connections` keep-alive connections for WRK_SECONDS. */
async function wrk(base: string, t: Target, bytes: number, seconds = WRK_SECONDS): Promise<LoadResult> {
  const args = ['-t1', `-c${t.connections}`, `-d${seconds}s`, '--latency', ...Object.entries(t.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), base + t.path];
  const child = spawn(WRK, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', resolve);
  });
  const ms = (v: string, unit: string) => Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 } as Record<string, number>)[unit];
  const time = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`wrk printed no ${re} (exit ${code}):\n${out}`);
    return ms(m[1], m[2]);
  };
  const n = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
    + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return {
    name: t.name, connections: t.connections, n, errors, bytes, loadgen: 'wrk',
    p50: time(/\s50%\s+([\d.]+)(us|ms|s|m)\b/), p99: time(/\s99%\s+([\d.]+)(us|ms|s|m)\b/),
    max: time(/Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b/), rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
  };
}

async function runLoad(base: string, targets: Target[]): Promise<LoadResult[]> {
  const out: LoadResult[] = [];
  for (const t of targets) out.push(await hammer(base, t));
  return out;
}

/** This file again, as a child process: it reads the targets from its environment and prints results as JSON. */
function runLoadInChild(base: string, targets: Target[]): Promise<LoadResult[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, BENCH_API_LOAD: JSON.stringify({ base, targets }) }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`load generator exited with ${code}`));
      try {
        resolve(JSON.parse(out) as LoadResult[]);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err))); // JSON.parse throws a SyntaxError
      }
    });
  });
}

type Q = { query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }> };

/** 20 pipelines with 100 finished 3-step runs each, and one pipeline whose run has 50 steps of 3 attempts. */
export async function seedApiBench(q: Q): Promise<string> {
  await q.query(`insert into etl_pipelines (id, workflow, description, cron, timezone, enabled, config)
    select 'bench.p' || lpad(i::text, 2, '0'), 'demo', 'bench pipeline ' || i, '*/5 * * * *',
      case when i % 2 = 0 then 'Europe/Kyiv' else 'UTC' end, i % 3 = 0, '{"rows": 3}'::jsonb
    from generate_series(1, 20) i
    union all select 'bench.big', 'demo', 'the 50-step run', '0 3 * * *', 'UTC', true, '{}'::jsonb`);
  await q.query(`insert into etl_runs (id, pipeline_id, status, trigger, created_at, started_at, finished_at, rows, error)
    select gen_random_uuid(), 'bench.p' || lpad(p::text, 2, '0'), case when r % 5 = 0 then 'failed' else 'succeeded' end, 'manual',
      now() - r * interval '1 hour', now() - r * interval '1 hour' + interval '1 second', now() - r * interval '1 hour' + interval '9 seconds',
      jsonb_build_object('in', 1000 * r, 'out', 1000 * r),
      case when r % 5 = 0 then 'transform failed: upstream closed the connection (ECONNRESET) after 30000 ms' end
    from generate_series(1, 20) p, generate_series(1, ${RUNS_PER_PIPELINE}) r`);
  // History steps and attempts, so the planner sees tables of a realistic shape, not 150 rows.
  await q.query(`insert into etl_run_steps (run_id, key, position, status, attempts, started_at, finished_at, rows_in, rows_out, error, output)
    select r.id, k.key, k.pos, case when r.status = 'failed' and k.key = 'transform' then 'failed'
        when r.status = 'failed' and k.key = 'write' then 'pending' else 'succeeded' end, 1,
      r.started_at, r.finished_at, 1000, 1000, case when r.status = 'failed' and k.key = 'transform' then r.error end, '{"ref": "blob"}'::jsonb
    from etl_runs r, (values ('fetch', 0), ('transform', 1), ('write', 2)) k(key, pos)`);
  await q.query(`insert into etl_step_attempts (run_id, step_key, attempt, status, started_at, finished_at, error, worker)
    select run_id, key, 1, status, started_at, finished_at, error, 'worker-1:1000' from etl_run_steps where status <> 'pending'`);
  const runId = (await q.query(`insert into etl_runs (id, pipeline_id, status, trigger, created_at, started_at, finished_at, rows)
    values (gen_random_uuid(), 'bench.big', 'succeeded', 'manual', now() - interval '10 minutes', now() - interval '10 minutes',
      now() - interval '1 minute', '{"in": 50000, "out": 50000}') returning id`)).rows[0].id as string;
  await q.query(`insert into etl_run_steps (run_id, key, position, status, attempts, started_at, finished_at, rows_in, rows_out, checkpoint, output)
    select $1, 'step_' || lpad(s::text, 2, '0'), s - 1, 'succeeded', 3, now() - interval '10 minutes' + s * interval '10 seconds',
      now() - interval '10 minutes' + s * interval '10 seconds' + interval '8 seconds', 1000 * s, 1000 * s,
      jsonb_build_object('pagesDone', s, 'nextStartIndex', 500 * s, 'cursor', md5(s::text)),
      jsonb_build_object('staged', jsonb_build_object('name', 'step_' || s, 'chunks', s, 'rows', 1000 * s))
    from generate_series(1, 50) s`, [runId]);
  await q.query(`insert into etl_step_attempts (run_id, step_key, attempt, status, started_at, finished_at, error, error_stack, worker)
    select $1, 'step_' || lpad(s::text, 2, '0'), a, case when a < 3 then 'failed' else 'succeeded' end,
      now() - interval '10 minutes' + s * interval '10 seconds' + a * interval '2 seconds',
      now() - interval '10 minutes' + s * interval '10 seconds' + a * interval '2 seconds' + interval '1 second',
      case when a < 3 then 'page ' || (500 * s) || ' failed: socket hang up (ECONNRESET) while reading the response body' end,
      case when a < 3 then 'Error: socket hang up' || repeat(E'\\n    at step (steps/sources/yespo.ts:120:11)', 8) end,
      'worker-1:' || (1000 + a)
    from generate_series(1, 50) s, generate_series(1, 3) a`, [runId]);
  await q.query('analyze');
  return runId;
}

/** The responses must be the real thing, not a fast 401 or 404. */
async function checkResponses(base: string, runId: string, headers: Record<string, string>): Promise<void> {
  const { run } = await (await fetch(`${base}/api/etl/runs/${runId}`, { headers })).json() as { run: { steps: { attemptsHistory: unknown[] }[] } };
  const attempts = run.steps.reduce((n, s) => n + s.attemptsHistory.length, 0);
  if (run.steps.length !== 50 || attempts !== 150) throw new Error(`the seeded run reads back with ${run.steps.length} steps, ${attempts} attempts`);
  const { pipelines } = await (await fetch(`${base}/api/etl/pipelines`, { headers })).json() as { pipelines: { lastRun: unknown }[] };
  if (pipelines.length !== 21 || pipelines.some((p) => !p.lastRun)) throw new Error('the seeded pipelines read back wrong');
}

export async function benchApi(): Promise<BenchRow[]> {
  const db = await freshDatabase([], PG);
  const redis = new Redis(REDIS, { maxRetriesPerRequest: 2 });
  redis.on('error', () => {});
  const registry = createRegistry([demoWorkflow]);
  const log = createLogger({ level: 'silent' });
  const queueName = uid('bench_api');
  const engine = createEngine({ db, redis, queueName, registry, log });
  // As server/main.ts: the event hub feeds SSE and invalidates the read cache.
  const hub = await createEventHub(new Redis(REDIS), eventsChannel(queueName), log);
  const token = `tok_${randomBytes(24).toString('hex')}`;
  const sessionId = randomBytes(18).toString('base64url');
  await redis.set(`mc:sess:${sessionId}`, JSON.stringify({ user: { id: 'bench', email: 'ops@example.com' } }), 'EX', 600);
  const app = createApp({ db, redis, engine, log, registry, config: { apiToken: token, sessionCookie: 'mc_sess' }, subscribeEvents: hub.subscribe });
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as http.Server;
  try {
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const runId = await seedApiBench(db.pool);
    const bearer = { authorization: `Bearer ${token}` };
    await checkResponses(base, runId, bearer);

    const runPath = `/api/etl/runs/${runId}`;
    const target = (name: string, p: string, headers: Record<string, string>, connections = CONNECTIONS): Target =>
      ({ name, path: p, headers, connections, requests: connections === 1 ? Math.min(REQUESTS, 1_000) : REQUESTS });
    const targets = [
      target('GET /runs/:id (50 steps)', runPath, bearer),
      target('GET /pipelines (21)', '/api/etl/pipelines', bearer),
      target('GET /runs/:id, session cookie', runPath, { cookie: `mc_sess=${sessionId}` }),
      // One connection: the service time, without queueing behind 49 other requests.
      target('GET /runs/:id (50 steps)', runPath, bearer, 1),
      target('GET /pipelines (21)', '/api/etl/pipelines', bearer, 1),
      // Open loop at a steady rate far above what operators' pages cause: latency as served.
      { ...target('GET /runs/:id (50 steps)', runPath, bearer), requests: 1_000, rate: OPEN_RATE },
      { ...target('GET /pipelines (21)', '/api/etl/pipelines', bearer), requests: 1_000, rate: OPEN_RATE },
    ];
    // Warm-up (JIT, connection pools, the read cache), not reported: the first measured
    // target would otherwise pay for it alone.
    const warm = [target('warm-up', runPath, bearer), target('warm-up', '/api/etl/pipelines', bearer)].map((t) => ({ ...t, requests: 2_000 }));
    const node = (list: Target[]) => (LOADGEN === 'inproc' ? runLoad(base, list) : runLoadInChild(base, list));
    let results: LoadResult[];
    if (LOADGEN === 'wrk') {
      const size = async (p: string) => (await (await fetch(base + p, { headers: bearer })).arrayBuffer()).byteLength;
      const bytes = { [runPath]: await size(runPath), '/api/etl/pipelines': await size('/api/etl/pipelines') };
      for (const t of warm) await wrk(base, t, 0, 2);
      results = [];
      for (const t of targets.filter((x) => !x.rate)) results.push(await wrk(base, t, bytes[t.path]));
      results.push(...await node(targets.filter((x) => x.rate)));
    } else {
      await node(warm);
      results = await node(targets);
    }
    return results.flatMap((r) => {
      const name = `${r.name} @${r.connections}${r.rate ? `, ${r.rate}/s` : ''}`;
      const conns = `${r.connections} keep-alive conn${r.connections === 1 ? '' : 's'}`;
      const note = `${r.n} req, ${conns}, ${r.loadgen} loadgen, ${(r.bytes / 1024).toFixed(1)} KB body${r.errors ? `, ${r.errors} ERRORS` : ''}`;
      const target = r.connections === CONNECTIONS && !r.rate ? '; target p99 ≤ 20 ms' : '';
      return [
        { bench: 'api', metric: `${name} p50`, value: r.p50, unit: 'ms' },
        { bench: 'api', metric: `${name} p99`, value: r.p99, unit: 'ms', note: `max ${r.max.toFixed(1)} ms${target}` },
        { bench: 'api', metric: `${name} throughput`, value: r.rps, unit: 'req/s', note },
      ];
    });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await redis.del(`mc:sess:${sessionId}`);
    await hub.close();
    await engine.queue.obliterate({ force: true }).catch(() => {});
    await engine.close();
    redis.disconnect();
    await db.drop();
  }
}

const load = process.env.BENCH_API_LOAD;
if (load && process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { base, targets } = JSON.parse(load) as { base: string; targets: Target[] };
  process.stdout.write(JSON.stringify(await runLoad(base, targets)));
  process.exit(0);
}
