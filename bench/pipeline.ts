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
import { addCpu, coreCount, cpuSnapshot, servers, settle, type CpuGroups } from './cpu';
import { benchConfig, benchQueryWorkflow, benchQuietWorkflow, benchSequentialWorkflow, benchSql } from './pipeline-workflow';
import { dropDatabase, now, percentile, type BenchRow } from './util';

/**
 * Rows through a whole pipeline (ClickHouse → fetch → transform → write a Redis hash, via
 * the engine and a worker process), next to each stage's raw speed alone; the Postgres
 * mirror sink (bq.projects: upsert + delete of vanished keys) next to a raw COPY; a second
 * Redis client's latency while the 1M-row write builds and swaps, next to the same client
 * at idle; and the worker's peak RSS at 200k and 2M rows.
 */
const PG = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const N = Number(process.env.BENCH_ROWS ?? 1_000_000);
const RSS_SMALL = Number(process.env.BENCH_RSS_SMALL ?? 200_000);
const RSS_LARGE = Number(process.env.BENCH_RSS_LARGE ?? 2_000_000);
const AB_RUNS = Number(process.env.BENCH_AB_RUNS ?? 3);

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

/** A second Redis client sending PINGs back to back, each timed: what another app sharing
 *  Redis feels. Samples carry their wall-clock time, to cut out a window afterwards. */
function latencyProbe(url: string) {
  const client = new Redis(url);
  const samples: { at: number; ms: number }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = now();
      await client.ping();
      samples.push({ at: Date.now(), ms: now() - t });
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      client.disconnect();
      return samples;
    },
  };
}
const median = (xs: number[]) => percentile(xs, 50);
const latencyStats = (xs: number[]) => ({ p999: percentile(xs, 99.9), max: Math.max(...xs), n: xs.length });

/** The bq.projects mirror: `n` rows already in the table; the source then loses 3 % of
 *  them, gains as many new ones and changes 2 %; timed is that second mirror. */
async function benchMirror(db: ReturnType<typeof createDatabase>, n: number): Promise<{ mirrorRps: number; copyRps: number; deleted: number }> {
  const cols = ['project_id', 'name', 'status', 'owner_email', 'budget_usd'];
  const lost = Math.round(n * 0.03);
  const project = (i: number, v: number) => ({ project_id: `prj-${i}`, name: `customer-${i}${v ? ' v2' : ''}`, status: ['Kyiv', 'Lisbon', 'Tokyo'][i % 3], owner_email: `${i % 97}@example.com`, budget_usd: (i % 100_000) / 100 });
  const source = (from: number, changed: (i: number) => boolean) => () => asyncOf((function* () {
    for (let i = from; i < from + n; i += 10_000) yield Array.from({ length: Math.min(10_000, from + n - i) }, (_, k) => project(i + k, changed(i + k) ? 1 : 0));
  })());
  const mirror = (batches: AsyncIterable<Record<string, unknown>[]>) => upsertRows({
    db, table: 'bq_projects', keyColumns: ['project_id'], columns: cols, batches, runId: '00000000-0000-4000-8000-000000000001', deleteMissing: true,
  });
  await db.pool.query('truncate bq_projects');
  await mirror(source(0, () => false)());
  await db.pool.query('vacuum analyze bq_projects');
  let t0 = now();
  const r = await mirror(source(lost, (i) => i % 50 === 0)());
  const mirrorRps = n / ((now() - t0) / 1000);
  await db.pool.query('truncate bq_projects');
  t0 = now();
  await copyRows({ db, table: 'bq_projects', columns: cols, batches: source(0, () => false)() });
  const copyRps = n / ((now() - t0) / 1000);
  return { mirrorRps, copyRps, deleted: r.deleted };
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
  // The process tuning the worker service gets: NODE_OPTIONS, its step concurrency (the
  // overlapped steps of a run run at the same time) and glibc's MALLOC_* settings.
  const tuning = Object.fromEntries(Object.entries(compose.services['marketing-worker'].environment)
    .filter(([k]) => k === 'NODE_OPTIONS' || k === 'WORKER_CONCURRENCY' || k.startsWith('MALLOC_')));
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
    pid: child.pid!,
    peakRssMb: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function benchPipeline(): Promise<BenchRow[]> {
  if (process.env.BENCH_ONLY === 'mirror') return benchMirrorOnly();
  const chUrl = await ensureClickHouse();
  const dbName = `etl_bench_pipe_${process.pid}`;
  const url = `${PG}/${dbName}`;
  const seed = (id: string, n: number, workflow = 'bench-query') => ({ id, workflow, description: '', cron: '0 0 * * *', timezone: 'UTC', config: benchConfig(n, `bench:${process.pid}:${id}`) });
  await migrateDatabase(url, [seed('p1m', N), seed('p200k', RSS_SMALL), seed('p2m', RSS_LARGE), seed('p1mq', N, 'bench-query-quiet'), seed('p1ms', N, 'bench-query-sequential')]);
  const db = createDatabase(url, { max: 8 });
  const redis = new Redis(REDIS, { maxRetriesPerRequest: null });
  const queueName = `bench-pipe-${process.pid}`;
  const engine = createEngine({ db, redis, queueName, registry: createRegistry([benchQueryWorkflow, benchQuietWorkflow, benchSequentialWorkflow]), log: createLogger({ level: 'silent' }) });

  // Stage alone: reading the source.
  const ch = createClickHouse({ url: chUrl, credential: null });
  const t0 = now();
  let read = 0;
  for await (const b of clickHouseBatches(ch, benchSql(N), { batchSize: 10_000 })) read += b.length;
  const sourceRps = read / ((now() - t0) / 1000);
  await ch.close();
  // Stage alone: pipelined writes of the same data to Redis.
  const redisRps = await rawRedisWrite(redis, `bench:${process.pid}:raw`, N);

  // End to end, one fresh worker process per run (so each peak RSS is that run's).
  const runPipeline = async (id: string, n: number) => {
    const w = await spawnWorker({ DATABASE_URL: url, REDIS_URL: REDIS, QUEUE: queueName, CLICKHOUSE_URL: chUrl });
    const classify = servers({ worker: w.pid });
    await settle(classify); // the previous run's leftovers (a background free, an autovacuum) are not this run's
    const cpuBefore = cpuSnapshot(classify);
    try {
      const { runId } = await engine.trigger(id);
      let row;
      for (;;) {
        row = (await db.pool.query('select status, error, extract(epoch from finished_at - created_at) as secs from etl_runs where id = $1', [runId])).rows[0];
        if (['succeeded', 'failed', 'cancelled'].includes(row.status)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      if (row.status !== 'succeeded') throw new Error(`bench run ${id} ${row.status}: ${row.error}`);
      if (process.env.BENCH_VERBOSE) console.error((await db.pool.query("select key, extract(epoch from started_at - (select created_at from etl_runs where id = $1)) as start, extract(epoch from finished_at - started_at) as secs, rows_out from etl_run_steps where run_id = $1 order by position", [runId])).rows);
      const cpu: CpuGroups = {};
      addCpu(cpu, cpuBefore, cpuSnapshot(classify));
      return { rps: n / Number(row.secs), rss: w.peakRssMb(), cpu };
    } finally {
      await w.stop();
      await redis.unlink(`cache:bench:${process.pid}:${id}`, `cache:bench:${process.pid}:${id}:meta`);
    }
  };
  // Another Redis client's latency: idle first, then while the 1M-row run writes (the
  // write step's window, read back from Postgres).
  let probe = latencyProbe(REDIS);
  await new Promise((r) => setTimeout(r, 3_000));
  const idle = latencyStats((await probe.stop()).map((x) => x.ms));
  probe = latencyProbe(REDIS);
  const e2e = await runPipeline('p1m', N);
  const samples = await probe.stop();
  const win = (await db.pool.query(`select extract(epoch from s.started_at) * 1000 as a, extract(epoch from s.finished_at) * 1000 as b
    from etl_run_steps s join etl_runs r on r.id = s.run_id where r.pipeline_id = 'p1m' and s.key = 'write' order by s.finished_at desc limit 1`)).rows[0];
  const busy = latencyStats(samples.filter((x) => x.at >= Number(win.a) && x.at <= Number(win.b)).map((x) => x.ms));
  // What step telemetry (events, live progress) costs: the same 1M-row pipeline with it
  // and without it (bench-query-quiet), alternating, the order swapped every round.
  // And what overlapping the steps gains: the same steps one after another (p1ms).
  const ab = { on: [] as number[], off: [] as number[], seq: [] as number[] };
  // CPU by process of an overlapped run with nothing else going on (the first run shares
  // the machine with the PING probe): the last A/B one, or the first run without A/B.
  let cpu = e2e.cpu;
  for (let i = 0; i < AB_RUNS; i++) {
    const order = i % 2 ? ['p1ms', 'p1mq', 'p1m'] : ['p1m', 'p1mq', 'p1ms'];
    for (const id of order) {
      const r = await runPipeline(id, N);
      (id === 'p1m' ? ab.on : id === 'p1mq' ? ab.off : ab.seq).push(r.rps);
      if (id === 'p1m') cpu = r.cpu;
    }
  }
  const small = await runPipeline('p200k', RSS_SMALL);
  const large = await runPipeline('p2m', RSS_LARGE);

  // Postgres: the bq.projects mirror vs a raw COPY of as many rows (into the emptied table).
  const pg = await benchMirror(db, N);

  await engine.queue.obliterate({ force: true });
  await engine.close();
  redis.disconnect();
  await db.close();
  await dropDatabase(PG, dbName);

  const slowest = Math.min(sourceRps, redisRps);
  // The headline: the median of the runs with nothing else on the machine (the first run
  // shares Redis with the PING probe); the first run alone when the A/B rounds are off.
  const endToEnd = AB_RUNS ? median(ab.on) : e2e.rps;
  const b = `pipeline: ${N.toLocaleString('en')} rows`;
  return [
    { bench: b, metric: 'end to end ClickHouse → fetch ‖ transform ‖ write (Redis hash), overlapped', value: endToEnd, unit: 'rows/s', note: `target ≥ 300,000 (#14)${AB_RUNS ? `; median of ${AB_RUNS}` : ''}` },
    { bench: b, metric: 'end to end, first run, while another client PINGs Redis back to back', value: e2e.rps, unit: 'rows/s' },
    ...(AB_RUNS ? [
      { bench: b, metric: `end to end, median of ${AB_RUNS}: with step telemetry (events, progress), as shipped`, value: median(ab.on), unit: 'rows/s', note: ab.on.map((x) => Math.round(x / 1000)).join(', ') + ' k' },
      { bench: b, metric: `end to end, median of ${AB_RUNS}: telemetry off (same steps, alternating)`, value: median(ab.off), unit: 'rows/s', note: ab.off.map((x) => Math.round(x / 1000)).join(', ') + ' k' },
      { bench: b, metric: 'ratio with telemetry / without', value: median(ab.on) / median(ab.off), unit: '×', note: 'target ≥ 0.95 (#12)' },
      { bench: b, metric: `end to end, median of ${AB_RUNS}: the same steps one after another (not overlapped)`, value: median(ab.seq), unit: 'rows/s', note: ab.seq.map((x) => Math.round(x / 1000)).join(', ') + ' k' },
      { bench: b, metric: 'ratio overlapped / one after another', value: median(ab.on) / median(ab.seq), unit: '×' },
    ] : []),
    { bench: b, metric: 'stage alone: read ClickHouse', value: sourceRps, unit: 'rows/s' },
    { bench: b, metric: 'stage alone: pipelined HSET to Redis', value: redisRps, unit: 'rows/s' },
    { bench: b, metric: 'ratio end to end / slowest stage', value: endToEnd / slowest, unit: '×', note: 'target ≥ 0.8 (#14)' },
    ...pipelineCpuRows(b, cpu, N),
    { bench: b, metric: 'Redis PING from another client at idle: p99.9', value: idle.p999, unit: 'ms', note: `max ${idle.max.toFixed(2)} ms, ${idle.n} pings` },
    { bench: b, metric: 'Redis PING from another client during the 1M-row write + swap: p99.9', value: busy.p999, unit: 'ms', note: `max ${busy.max.toFixed(2)} ms, ${busy.n} pings` },
    { bench: b, metric: 'Redis PING max: during the write / at idle', value: busy.max, unit: 'ms', note: `idle max ${idle.max.toFixed(2)} ms` },
    { bench: b, metric: `Postgres mirror sink (bq.projects; ${Math.round(N * 0.03).toLocaleString('en')} deleted, as many new, 2% changed)`, value: pg.mirrorRps, unit: 'rows/s', note: `${pg.deleted.toLocaleString('en')} rows deleted` },
    { bench: b, metric: 'Postgres raw COPY', value: pg.copyRps, unit: 'rows/s' },
    { bench: b, metric: 'ratio mirror / raw COPY', value: pg.mirrorRps / pg.copyRps, unit: '×', note: 'target ≥ 0.6' },
    { bench: b, metric: `worker peak RSS, ${RSS_SMALL.toLocaleString('en')} rows`, value: small.rss, unit: 'MB', note: 'target ≤ 256' },
    { bench: b, metric: `worker peak RSS, ${RSS_LARGE.toLocaleString('en')} rows`, value: large.rss, unit: 'MB', note: 'target ≤ 1.2× the small run' },
    { bench: b, metric: 'worker peak RSS ratio large/small', value: large.rss / small.rss, unit: '×' },
    { bench: b, metric: `worker peak RSS, ${N.toLocaleString('en')} rows`, value: e2e.rss, unit: 'MB' },
  ];
}

/** CPU seconds an overlapped 1M-row run cost each process (the bench process only polls
 *  the run's status). All of them share the machine's cores: at this CPU per row, the
 *  run can go about as fast as their sum spread over every core (an estimate: the
 *  kernel's own work is left out, and no run keeps every core busy all the time). */
function pipelineCpuRows(b: string, cpu: CpuGroups, n: number): BenchRow[] {
  const total = Object.values(cpu).reduce((a, x) => a + x, 0);
  if (total === 0) return [{ bench: b, metric: 'CPU by process, one overlapped run', value: NaN, unit: 's', note: 'no /proc here' }];
  const parts = Object.entries(cpu).filter(([, v]) => v >= 0.01).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
  return [
    { bench: b, metric: 'CPU by process, one overlapped run (seconds)', value: total, unit: 's', note: parts },
    { bench: b, metric: `rows/s at that CPU per row on ${coreCount()} cores: rows / (CPU sum / cores)`, value: n / (total / coreCount()), unit: 'rows/s', note: 'estimate; target ≥ 300,000 (#14)' },
  ];
}

/** `BENCH_ONLY=mirror npm run bench -- pipeline`: the Postgres figures alone. */
async function benchMirrorOnly(): Promise<BenchRow[]> {
  const dbName = `etl_bench_mirror_${process.pid}`;
  const url = `${PG}/${dbName}`;
  await migrateDatabase(url, []);
  const db = createDatabase(url, { max: 4 });
  try {
    const pg = await benchMirror(db, N);
    const b = `mirror: ${N.toLocaleString('en')} rows`;
    return [
      { bench: b, metric: 'Postgres mirror sink', value: pg.mirrorRps, unit: 'rows/s', note: `${pg.deleted} deleted` },
      { bench: b, metric: 'Postgres raw COPY', value: pg.copyRps, unit: 'rows/s' },
      { bench: b, metric: 'ratio mirror / raw COPY', value: pg.mirrorRps / pg.copyRps, unit: '×', note: 'target ≥ 0.6' },
    ];
  } finally {
    await db.close();
    await dropDatabase(PG, dbName);
  }
}
