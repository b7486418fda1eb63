import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlowProducer, Queue, type FlowJob } from 'bullmq';
import { Redis } from 'ioredis';
import { createDatabase } from '../db/client';
import { migrateDatabase } from '../db/migrate';
import { createLogger } from '../lib/logger';
import { createRegistry } from '../workflows/engine/define';
import { createEngine } from '../workflows/engine/engine';
import { eventsChannel, eventsOf } from '../workflows/engine/events';
import { benchWorkflow } from './engine-workflow';
import { addCpu, coreCount, cpuSnapshot, servers, type Classify, type CpuGroups } from './cpu';
import { dropDatabase, now, percentile, pool, type BenchRow } from './util';

/**
 * Trigger → succeeded latency and throughput of a 3-step no-op run through the engine
 * (Postgres bookkeeping, fenced claims, events) next to a raw BullMQ 3-job flow with no
 * bookkeeping, on the same Redis. Each system's worker runs in its own process (as in
 * production); this process triggers and waits for the completion signal. Engine and raw
 * runs alternate so both see the same machine noise.
 */
const PG = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const LATENCY_RUNS = Number(process.env.BENCH_LATENCY_RUNS ?? 300);
const THROUGHPUT_RUNS = Number(process.env.BENCH_THROUGHPUT_RUNS ?? 3_000);
const IN_FLIGHT = 64;
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);

interface System {
  start(): Promise<string>;
  done: Map<string, () => void>;
}

/** `done` holds a waiter per run id, or a placeholder when completion came first. */
function complete(done: Map<string, () => void>, id: string) {
  const waiter = done.get(id);
  if (waiter) {
    done.delete(id);
    waiter();
  } else done.set(id, () => {});
}

function runOnce(sys: System): Promise<number> {
  const t0 = now();
  return new Promise<number>((resolve, reject) => {
    sys.start().then((id) => {
      const fin = () => resolve(now() - t0);
      if (sys.done.has(id)) {
        sys.done.delete(id);
        fin();
      } else sys.done.set(id, fin);
    }, reject);
  });
}

async function measure(engine: System, raw: System, classify: Classify) {
  for (let i = 0; i < 50; i++) {
    await runOnce(engine);
    await runOnce(raw);
  }
  const lat = { engine: [] as number[], raw: [] as number[] };
  for (let i = 0; i < LATENCY_RUNS; i++) {
    lat.engine.push(await runOnce(engine));
    lat.raw.push(await runOnce(raw));
  }
  const secs = { engine: 0, raw: 0 };
  // CPU by process while each system runs its chunks: what a run costs, and where.
  const cpu: Record<'engine' | 'raw', CpuGroups> = { engine: {}, raw: {} };
  const chunk = Math.max(1, Math.floor(THROUGHPUT_RUNS / 5));
  let total = 0;
  for (; total < THROUGHPUT_RUNS; total += chunk) {
    for (const [name, sys] of [['engine', engine], ['raw', raw]] as const) {
      const before = cpuSnapshot(classify);
      const t0 = now();
      await pool(chunk, IN_FLIGHT, async () => {
        await runOnce(sys);
      });
      secs[name] += (now() - t0) / 1000;
      addCpu(cpu[name], before, cpuSnapshot(classify));
    }
  }
  const fig = (name: 'engine' | 'raw') => ({
    p50: percentile(lat[name], 50), p99: percentile(lat[name], 99), rps: total / secs[name],
    // CPU milliseconds per run, by process
    cpuMs: Object.fromEntries(Object.entries(cpu[name]).map(([g, s]) => [g, (s * 1000) / total])),
  });
  return { eng: fig('engine'), raw: fig('raw') };
}

async function spawnWorker(env: Record<string, string>): Promise<{ pid: number; stop: () => Promise<void> }> {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'engine-worker.ts');
  const extra = env.MODE === 'engine' ? (process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? []) : [];
  const child = spawn(process.execPath, [...extra, '--import', 'tsx', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`bench worker exited ${code}`)));
  });
  return {
    pid: child.pid!,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function benchEngine(): Promise<BenchRow[]> {
  const dbName = `etl_bench_${process.pid}`;
  const url = `${PG}/${dbName}`;
  await migrateDatabase(url, [{ id: 'bench', workflow: 'bench-noop', description: '', cron: '0 0 * * *', timezone: 'UTC', config: {}, concurrency: 'allow' }]);
  const db = createDatabase(url, { max: 8 });
  const redis = new Redis(REDIS, { maxRetriesPerRequest: null });
  const sub = new Redis(REDIS);
  const queueName = `bench-engine-${process.pid}`;
  const rawQueue = `bench-raw-${process.pid}`;
  const rawChannel = `bench-raw-done-${process.pid}`;
  const engine = createEngine({ db, redis, queueName, registry: createRegistry([benchWorkflow]), log: createLogger({ level: 'silent' }) });
  const flows = new FlowProducer({ connection: redis });

  const engineDone = new Map<string, () => void>();
  const rawDone = new Map<string, () => void>();
  await sub.subscribe(eventsChannel(queueName), rawChannel);
  sub.on('message', (channel, msg: string) => {
    if (channel === rawChannel) return complete(rawDone, msg);
    for (const e of eventsOf(JSON.parse(msg)) as { type: string; status: string; runId: string }[]) {
      if (e.type === 'run' && e.status === 'succeeded') complete(engineDone, e.runId);
    }
  });
  // As many worker processes per system as production runs replicas (compose: 2).
  const replicas = Array.from({ length: WORKERS });
  const engineWorkers = await Promise.all(replicas.map(() => spawnWorker({ MODE: 'engine', REDIS_URL: REDIS, DATABASE_URL: url, QUEUE: queueName })));
  const rawWorkers = await Promise.all(replicas.map(() => spawnWorker({ MODE: 'raw', REDIS_URL: REDIS, QUEUE: rawQueue, DONE_CHANNEL: rawChannel })));
  const workerPids = new Map([...engineWorkers.map((w) => [w.pid, 'engine worker'] as const), ...rawWorkers.map((w) => [w.pid, 'raw worker'] as const)]);
  const known = servers();
  const classify: Classify = (pid, cmd) => {
    const group = workerPids.get(pid) ?? known(pid, cmd);
    return group === 'bench process' ? 'bench process (triggers)' : group;
  };

  let n = 0;
  const keep = { removeOnComplete: { age: 3600, count: 2000 } };
  const rawStart = async () => {
    const id = `raw-${process.pid}-${n++}`;
    let child: FlowJob | undefined;
    for (const key of ['fetch', 'transform', 'write']) {
      child = { name: key, queueName: rawQueue, data: {}, opts: { jobId: `${id}.${key}`, ...keep }, children: child ? [child] : undefined };
    }
    await flows.add({ name: 'run', queueName: rawQueue, data: {}, opts: { jobId: id, ...keep }, children: [child!] });
    return id;
  };
  const { eng, raw } = await measure(
    { start: async () => (await engine.trigger('bench')).runId, done: engineDone },
    { start: rawStart, done: rawDone },
    classify,
  );

  await Promise.all([...engineWorkers, ...rawWorkers].map((w) => w.stop()));
  await engine.queue.obliterate({ force: true });
  await new Queue(rawQueue, { connection: redis }).obliterate({ force: true });
  await Promise.all([engine.close(), flows.close()]);
  await sub.quit();
  redis.disconnect();
  await db.close();
  await dropDatabase(PG, dbName);

  const b = 'engine: 3-step no-op run';
  return [
    { bench: b, metric: 'engine p50 trigger→succeeded', value: eng.p50, unit: 'ms' },
    { bench: b, metric: 'engine p99 trigger→succeeded', value: eng.p99, unit: 'ms' },
    { bench: b, metric: 'engine throughput', value: eng.rps, unit: 'runs/s', note: `${IN_FLIGHT} in flight; target ≥ 300` },
    { bench: b, metric: 'raw BullMQ p50', value: raw.p50, unit: 'ms' },
    { bench: b, metric: 'raw BullMQ p99', value: raw.p99, unit: 'ms' },
    { bench: b, metric: 'raw BullMQ throughput', value: raw.rps, unit: 'runs/s' },
    { bench: b, metric: 'p50 ratio engine/raw', value: eng.p50 / raw.p50, unit: '×', note: 'target ≤ 2 (#14)' },
    { bench: b, metric: 'throughput ratio engine/raw', value: eng.rps / raw.rps, unit: '×', note: 'target ≥ 0.4 (#14)' },
    ...cpuRows(b, eng.cpuMs, raw.cpuMs),
  ];
}

/** Where a run's CPU goes, engine beside raw. With every process on the same cores and
 *  the cores busy, the throughput ratio comes out near the inverse ratio of CPU per run:
 *  an estimate (the kernel's own work and anything not counted are left out). */
function cpuRows(b: string, eng: CpuGroups, raw: CpuGroups): BenchRow[] {
  const sum = (g: CpuGroups) => Object.values(g).reduce((a, x) => a + x, 0);
  if (sum(eng) === 0 || sum(raw) === 0) return [{ bench: b, metric: 'CPU per run', value: NaN, unit: 'ms', note: 'no /proc here' }];
  const parts = (g: CpuGroups) => Object.entries(g).filter(([, v]) => v >= 0.005).sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
  return [
    { bench: b, metric: 'CPU per run (throughput pass), engine: its processes', value: sum(eng), unit: 'ms', note: parts(eng) },
    { bench: b, metric: 'CPU per run (throughput pass), raw BullMQ: its processes', value: sum(raw), unit: 'ms', note: parts(raw) },
    { bench: b, metric: 'CPU per run, raw / engine: throughput ratio the CPU suggests', value: sum(raw) / sum(eng), unit: '×', note: `estimate; ${coreCount()} cores shared by all of them` },
  ];
}
