import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Redis } from 'ioredis';
import { parse } from 'yaml';
import { createDatabase } from '../db/client';
import { migrateDatabase } from '../db/migrate';
import { createLogger } from '../lib/logger';
import { copyRows, upsertRows } from '../steps/sinks/postgres-upsert';
import { clickHouseBatches, createClickHouse } from '../steps/sources/clickhouse';
import { createRegistry } from '../workflows/engine/define';
import { createEngine } from '../workflows/engine/engine';
import { ensureClickHouse } from '../test/fakes/clickhouse';
import { asyncOf } from '../test/helpers';
import { benchConfig, benchQueryWorkflow, benchSql } from './pipeline-workflow';
import { dropDatabase, now, type BenchRow } from './util';

/**
 * Rows through a whole pipeline (ClickHouse → fetch → transform → write a Redis hash, via
 * the engine and a worker process), next to each stage's raw speed alone; the Postgres
 * upsert sink next to a raw COPY; and the worker's peak RSS at 200k and 2M rows.
 */
const PG = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const N = Number(process.env.BENCH_ROWS ?? 1_000_000);
const RSS_SMALL = Number(process.env.BENCH_RSS_SMALL ?? 200_000);
const RSS_LARGE = Number(process.env.BENCH_RSS_LARGE ?? 2_000_000);

function rowAt(i: number) {
  return { id: i, name: `customer-${i}`, city: ['Kyiv', 'Lisbon', 'Tokyo', 'Dubai', 'Cancún'][i % 5], country: ['UA', 'PT', 'JP', 'AE', 'MX'][i % 5],
    amount: (i % 100_000) / 100, created_at: 1_700_000_000 + i, active: i % 2, score: i % 1000 };
}
function* rowBatches(n: number, batch: number) {
  for (let i = 0; i < n; i += batch) yield Array.from({ length: Math.min(batch, n - i) }, (_, k) => rowAt(i + k));
}
const generated = (n: number, batch = 10_000) => asyncOf(rowBatches(n, batch));

/** Raw Redis: the same rows as pipelined HSETs (1,000 fields a command, 8 commands a round). */
async function rawRedisWrite(redis: Redis, key: string, n: number): Promise<number> {
  const t0 = now();
  await redis.unlink(key);
  let p = redis.pipeline();
  let cmds = 0;
  for await (const batch of generated(n, 1_000)) {
    const args: string[] = [];
    for (const r of batch) args.push(String(r.id), JSON.stringify(r));
    p.hset(key, ...args);
    if (++cmds % 8 === 0) {
      await p.exec();
      p = redis.pipeline();
    }
  }
  await p.exec();
  const secs = (now() - t0) / 1000;
  await redis.unlink(key);
  return n / secs;
}

/**
 * The worker as production runs it: bundled by esbuild (no tsx loader in the process) and
 * started with the NODE_OPTIONS and MALLOC_* settings docker-compose.yml gives the worker
 * service.
 */
async function bundleWorker(): Promise<{ file: string; tuning: Record<string, string> }> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Inside the project (.tmp/ is git-ignored) so the bundle's bare imports resolve to
  // the project's node_modules.
  const outdir = path.join(here, '..', '.tmp', 'bench');
  await build({
    entryPoints: [path.join(here, 'pipeline-worker.ts')], outdir, outExtension: { '.js': '.mjs' }, bundle: true,
    platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning', splitting: true,
  });
  const compose = parse(readFileSync(path.join(here, '..', 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: { 'marketing-worker': { environment: Record<string, string> } } };
  // The process tuning the worker service gets: NODE_OPTIONS and glibc's MALLOC_* settings.
  const tuning = Object.fromEntries(Object.entries(compose.services['marketing-worker'].environment).filter(([k]) => k === 'NODE_OPTIONS' || k.startsWith('MALLOC_')));
  return { file: path.join(outdir, 'pipeline-worker.mjs'), tuning };
}

let bundled: Promise<{ file: string; tuning: Record<string, string> }> | undefined;
async function spawnWorker(env: Record<string, string>) {
  const { file, tuning } = await (bundled ??= bundleWorker());
  const extra = process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...extra, file], {
    env: { ...process.env, ...env, NODE_OPTIONS: '', ...tuning },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`bench worker exited ${code}`)));
  });
  return {
    peakRssMb: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function benchPipeline(): Promise<BenchRow[]> {
  const chUrl = await ensureClickHouse();
  const dbName = `etl_bench_pipe_${process.pid}`;
  const url = `${PG}/${dbName}`;
  const seed = (id: string, n: number) => ({ id, workflow: 'bench-query', description: '', cron: '0 0 * * *', timezone: 'UTC', config: benchConfig(n, `bench:${process.pid}:${id}`) });
  await migrateDatabase(url, [seed('p1m', N), seed('p200k', RSS_SMALL), seed('p2m', RSS_LARGE)]);
  const db = createDatabase(url, { max: 8 });
  const redis = new Redis(REDIS, { maxRetriesPerRequest: null });
  const queueName = `bench-pipe-${process.pid}`;
  const engine = createEngine({ db, redis, queueName, registry: createRegistry([benchQueryWorkflow]), log: createLogger({ level: 'silent' }) });

  // Stage alone: reading the source.
  const ch = createClickHouse({ url: chUrl, credential: null });
  let t0 = now();
  let read = 0;
  for await (const b of clickHouseBatches(ch, benchSql(N), { batchSize: 10_000 })) read += b.length;
  const sourceRps = read / ((now() - t0) / 1000);
  await ch.close();
  // Stage alone: pipelined writes of the same data to Redis.
  const redisRps = await rawRedisWrite(redis, `bench:${process.pid}:raw`, N);

  // End to end, one fresh worker process per run (so each peak RSS is that run's).
  const runPipeline = async (id: string, n: number) => {
    const w = await spawnWorker({ DATABASE_URL: url, REDIS_URL: REDIS, QUEUE: queueName, CLICKHOUSE_URL: chUrl });
    try {
      const { runId } = await engine.trigger(id);
      let row;
      for (;;) {
        row = (await db.pool.query('select status, error, extract(epoch from finished_at - created_at) as secs from etl_runs where id = $1', [runId])).rows[0];
        if (['succeeded', 'failed', 'cancelled'].includes(row.status)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      if (row.status !== 'succeeded') throw new Error(`bench run ${id} ${row.status}: ${row.error}`);
      if (process.env.BENCH_VERBOSE) console.error((await db.pool.query("select key, extract(epoch from finished_at - started_at) as secs, rows_out from etl_run_steps where run_id = $1 order by position", [runId])).rows);
      return { rps: n / Number(row.secs), rss: w.peakRssMb() };
    } finally {
      await w.stop();
      await redis.unlink(`cache:bench:${process.pid}:${id}`, `cache:bench:${process.pid}:${id}:meta`);
    }
  };
  const e2e = await runPipeline('p1m', N);
  const small = await runPipeline('p200k', RSS_SMALL);
  const large = await runPipeline('p2m', RSS_LARGE);

  // Postgres: the upsert sink vs a raw COPY of the same rows (into the emptied table).
  const cols = ['project_id', 'name', 'status', 'owner_email', 'budget_usd'];
  const projects = async function* () {
    for await (const b of generated(N)) yield b.map((r) => ({ project_id: `prj-${r.id}`, name: r.name, status: r.city, owner_email: `${r.country}@example.com`, budget_usd: r.amount }));
  };
  t0 = now();
  await upsertRows({ db, table: 'bq_projects', keyColumns: ['project_id'], columns: cols, batches: projects(), runId: '00000000-0000-4000-8000-000000000001' });
  const upsertRps = N / ((now() - t0) / 1000);
  await db.pool.query('truncate bq_projects');
  t0 = now();
  await copyRows({ db, table: 'bq_projects', columns: cols, batches: projects() });
  const copyRps = N / ((now() - t0) / 1000);

  await engine.queue.obliterate({ force: true });
  await engine.close();
  redis.disconnect();
  await db.close();
  await dropDatabase(PG, dbName);

  const slowest = Math.min(sourceRps, redisRps);
  const b = `pipeline: ${N.toLocaleString('en')} rows`;
  return [
    { bench: b, metric: 'end to end ClickHouse → fetch → transform → write (Redis hash)', value: e2e.rps, unit: 'rows/s', note: 'target ≥ 200,000' },
    { bench: b, metric: 'stage alone: read ClickHouse', value: sourceRps, unit: 'rows/s' },
    { bench: b, metric: 'stage alone: pipelined HSET to Redis', value: redisRps, unit: 'rows/s' },
    { bench: b, metric: 'ratio end to end / slowest stage', value: e2e.rps / slowest, unit: '×', note: 'target ≥ 0.5' },
    { bench: b, metric: 'Postgres upsert sink (COPY to temp + merge)', value: upsertRps, unit: 'rows/s' },
    { bench: b, metric: 'Postgres raw COPY', value: copyRps, unit: 'rows/s' },
    { bench: b, metric: 'ratio upsert / raw COPY', value: upsertRps / copyRps, unit: '×' },
    { bench: b, metric: `worker peak RSS, ${RSS_SMALL.toLocaleString('en')} rows`, value: small.rss, unit: 'MB', note: 'target ≤ 256' },
    { bench: b, metric: `worker peak RSS, ${RSS_LARGE.toLocaleString('en')} rows`, value: large.rss, unit: 'MB', note: 'target ≤ 1.2× the small run' },
    { bench: b, metric: 'worker peak RSS ratio large/small', value: large.rss / small.rss, unit: '×' },
    { bench: b, metric: `worker peak RSS, ${N.toLocaleString('en')} rows`, value: e2e.rss, unit: 'MB' },
  ];
}
