import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createDatabase } from '../db/client';
import { migrateDatabase } from '../db/migrate';
import { createLogger } from '../lib/logger';
import { startYespoFake } from '../sandbox/yespo-fake';
import { createEngine } from '../workflows/engine/engine';
import { pipelineSeeds, shipped } from '../workflows/index';
import { dropDatabase, type BenchRow } from './util';

/**
 * The worker as `npm run worker` starts it (scripts/run.mjs: one process, from the
 * TypeScript source compiled by esbuild to .run/worker.mjs, or the built bundle when it is
 * newer), with no
 * other tuning than the script's own heap flag (the image's): its RSS at idle and its peak over a Yespo run of 60,000 contacts
 * (120 pages of 500). Memory is read from /proc for the whole process tree.
 */
const PG = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const CONTACTS = Number(process.env.BENCH_YESPO_CONTACTS ?? 60_000);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const kb = (pid: number, field: 'VmRSS' | 'VmHWM') => {
  try {
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
};
/** The pid and every descendant of it. */
function tree(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch { /* gone */ }
  return [pid, ...kids.flatMap(tree)];
}
const treeMb = (pid: number, field: 'VmRSS' | 'VmHWM') => tree(pid).reduce((s, p) => s + kb(p, field), 0) / 1024;

async function measure(from: 'source' | 'bundle', dbUrl: string, yespoUrl: string, apiKey: string) {
  const queue = `bench-mem-${from}-${process.pid}`;
  // Exactly the command of package.json's "worker" script (node, its flags, scripts/run.mjs).
  const script = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { worker: string } }).scripts.worker;
  const [cmd, ...args] = script.split(/\s+/);
  if (cmd !== 'node') throw new Error(`unexpected worker script: ${script}`);
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: {
      ...process.env, NODE_OPTIONS: '', ETL_RUN_FROM: from, DATABASE_URL: dbUrl, REDIS_URL: REDIS, ETL_QUEUE: queue,
      YESPO_BASE_URL: yespoUrl, ETL_CRED_YESPO_OVAGO: JSON.stringify({ apiKey }), LOG_LEVEL: 'info',
      WORKER_HEARTBEAT_FILE: path.join(root, '.tmp', `bench-heartbeat-${process.pid}`),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('worker started')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${out.slice(-500)}`)));
  });
  await new Promise((r) => setTimeout(r, 3_000)); // settled after start-up
  const idle = treeMb(child.pid!, 'VmRSS');
  const db = createDatabase(dbUrl, { max: 2 });
  const redis = new Redis(REDIS, { maxRetriesPerRequest: null });
  const engine = createEngine({ db, redis, queueName: queue, registry: shipped.registry, log: createLogger({ level: 'silent' }) });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, treeMb(child.pid!, 'VmRSS'))), 50);
  try {
    const t0 = performance.now();
    const { runId } = await engine.trigger('yespo.OVAGO');
    for (;;) {
      const row = (await db.pool.query<{ status: string; error: string | null }>('select status, error from etl_runs where id = $1', [runId])).rows[0];
      if (row.status === 'succeeded') break;
      if (row.status === 'failed' || row.status === 'cancelled') throw new Error(`bench run ${row.status}: ${row.error}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    peak = Math.max(peak, treeMb(child.pid!, 'VmHWM'));
    return { idle, peak, runSecs: (performance.now() - t0) / 1000 };
  } finally {
    clearInterval(sampler);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await engine.queue.obliterate({ force: true }).catch(() => {});
    await engine.close();
    await redis.unlink('cache:bench-mem:yespo:OVAGO:contacts', 'cache:bench-mem:yespo:OVAGO:contacts:meta');
    redis.disconnect();
    await db.close();
  }
}

export async function benchWorkerMemory(): Promise<BenchRow[]> {
  const apiKey = `bench-key-${process.pid}`;
  const yespo = await startYespoFake({ groups: { '1001': { apiKey, contacts: CONTACTS } } });
  const dbName = `etl_bench_mem_${process.pid}`;
  const url = `${PG}/${dbName}`;
  const seeds = pipelineSeeds.map((s) => s.id === 'yespo.OVAGO' ? { ...s, config: { ...s.config, ratePerSec: 100, dataset: 'bench-mem:yespo:OVAGO:contacts' } } : s);
  await migrateDatabase(url, seeds);
  const rows: BenchRow[] = [];
  const b = `worker memory: npm run worker, Yespo ${CONTACTS.toLocaleString('en')} contacts`;
  try {
    for (const from of ['source', 'bundle'] as const) {
      if (from === 'bundle' && !existsSync(path.join(root, 'dist', 'worker.mjs'))) continue;
      const m = await measure(from, url, yespo.url, apiKey);
      rows.push(
        { bench: b, metric: `idle RSS (from the ${from})`, value: m.idle, unit: 'MB', note: 'target ≤ 100' },
        { bench: b, metric: `peak RSS over the run (from the ${from})`, value: m.peak, unit: 'MB', note: 'target ≤ 256' },
        // Beside the memory figures, so a setting that trades time for memory shows its price.
        { bench: b, metric: `run time, trigger → succeeded (from the ${from})`, value: m.runSecs, unit: 's' },
      );
    }
  } finally {
    await yespo.close();
    await dropDatabase(PG, dbName);
  }
  return rows;
}
