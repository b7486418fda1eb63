import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { benchColumns, benchSql } from '../bench/pipeline-workflow';
import { defaultRegistry, pipelineSeeds } from '../workflows';
import { createEngine } from '../workflows/engine/engine';
import { ensureClickHouse } from './fakes/clickhouse';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

/**
 * The worker inside the budget's 512 MB, as the kernel enforces it: the production bundle
 * of worker/main.ts, with marketing-worker's environment from docker-compose.yml
 * (NODE_OPTIONS=--max-old-space-size, WORKER_CONCURRENCY), in a memory cgroup limited to
 * 512 MB (no swap: an overrun is an OOM kill, as in the container), runs the largest load
 * the README claims: a 2,000,000-row full-table load (ClickHouse → fetch → transform →
 * write into one Redis hash) through the ch.top_dests pipeline's own steps.
 */

const ROWS = Number(process.env.MEMORY_TEST_ROWS ?? 2_000_000);
// MEMORY_TEST_LIMIT_MB lowers the limit by hand, to see the kernel enforce it (an OOM kill).
const LIMIT_MB = Number(process.env.MEMORY_TEST_LIMIT_MB ?? 512);
const LIMIT = LIMIT_MB * 1024 * 1024;

/** A memory cgroup of our own under this process's (v1 `memory`, or v2 with the memory controller), or why not. */
function createMemoryCgroup(name: string): { dir: string; v: 1 | 2; peak(): number; ooms(): number; remove(): void } | string {
  const lines = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
  const v1 = lines.find((l) => l.split(':')[1]?.split(',').includes('memory'));
  try {
    if (v1 && existsSync('/sys/fs/cgroup/memory')) {
      const dir = path.join('/sys/fs/cgroup/memory', v1.split(':')[2], name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'memory.limit_in_bytes'), String(LIMIT));
      if (existsSync(path.join(dir, 'memory.memsw.limit_in_bytes'))) writeFileSync(path.join(dir, 'memory.memsw.limit_in_bytes'), String(LIMIT));
      return {
        dir, v: 1,
        peak: () => Number(readFileSync(path.join(dir, 'memory.max_usage_in_bytes'), 'utf8')),
        ooms: () => Number(/oom_kill (\d+)/.exec(readFileSync(path.join(dir, 'memory.oom_control'), 'utf8'))?.[1] ?? 0),
        remove: () => rmdirSync(dir),
      };
    }
    const v2 = lines.find((l) => l.startsWith('0::'));
    const root = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((r) => existsSync(path.join(r, 'cgroup.controllers')) && readFileSync(path.join(r, 'cgroup.controllers'), 'utf8').includes('memory'));
    if (v2 && root) {
      const dir = path.join(root, v2.slice(3), name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'memory.max'), String(LIMIT));
      if (existsSync(path.join(dir, 'memory.swap.max'))) writeFileSync(path.join(dir, 'memory.swap.max'), '0');
      return {
        dir, v: 2,
        peak: () => Number(readFileSync(path.join(dir, existsSync(path.join(dir, 'memory.peak')) ? 'memory.peak' : 'memory.current'), 'utf8')),
        ooms: () => Number(/oom_kill (\d+)/.exec(readFileSync(path.join(dir, 'memory.events'), 'utf8'))?.[1] ?? 0),
        remove: () => rmdirSync(dir),
      };
    }
    return 'no memory cgroup controller is mounted';
  } catch (err) {
    return `cannot create a memory cgroup here: ${(err as Error).message}`;
  }
}

const cgroup = createMemoryCgroup(uid('etl-memtest'));
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('marketing-worker under a hard 512 MB limit', () => {
  if (typeof cgroup === 'string') process.stdout.write(`memory-limit test skipped: ${cgroup}\n`);

  it.skipIf(typeof cgroup === 'string')(`runs the README's largest load (${ROWS.toLocaleString('en')} rows into a Redis hash) without an OOM kill`, async () => {
    const cg = cgroup as Exclude<typeof cgroup, string>;
    cleanups.push(() => cg.remove());
    const chUrl = await ensureClickHouse();
    const db = await freshDatabase(pipelineSeeds);
    cleanups.push(() => db.drop());
    const redis = new Redis(REDIS_URL);
    const dataset = `test:${uid('mem')}`;
    cleanups.push(async () => {
      await redis.del(`cache:${dataset}`, `cache:${dataset}:meta`);
      redis.disconnect();
    });
    // ch.top_dests' workflow, configured as a full-table load (SQL is pipeline config).
    const config = {
      credential: 'clickhouse', pageSize: 10_000,
      datasets: [{ name: 'rows', dataset, shape: 'hash', keyField: 'id', sql: benchSql(ROWS), columns: benchColumns }],
      check: { allowEmpty: false, minFractionOfLast: 0 },
    };
    await db.pool.query(`update etl_pipelines set config = $1 where id = 'ch.top_dests'`, [config]);

    // The production bundle, as the image runs it (npm packages stay external, as in scripts/build.ts).
    const outdir = path.resolve('.tmp', `memory-test-${process.pid}`);
    cleanups.push(() => rmSync(outdir, { recursive: true, force: true }));
    await build({
      entryPoints: { worker: 'worker/main.ts' }, outdir, outExtension: { '.js': '.mjs' }, bundle: true,
      platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning', splitting: true,
    });
    const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, { environment: Record<string, string> }> };
    const serviceEnv = compose.services['marketing-worker'].environment;
    expect(serviceEnv.NODE_OPTIONS).toMatch(/--max-old-space-size=\d+/);
    const queueName = uid('q');
    // The shell puts itself into the cgroup, then becomes node: every byte the worker touches is charged there.
    const worker: ChildProcess = spawn('sh', ['-c', `echo $$ > ${cg.dir}/cgroup.procs && exec "${process.execPath}" "${path.join(outdir, 'worker.mjs')}"`], {
      env: {
        ...process.env, NODE_OPTIONS: serviceEnv.NODE_OPTIONS, WORKER_CONCURRENCY: serviceEnv.WORKER_CONCURRENCY,
        DATABASE_URL: db.url, REDIS_URL, ETL_QUEUE: queueName, CLICKHOUSE_URL: chUrl,
        ETL_CRED_CLICKHOUSE: '{"username":"default","password":""}', WORKER_HEARTBEAT_FILE: path.join(outdir, 'heartbeat'), LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const died = new Promise<never>((_, reject) => worker.once('exit', (code, signal) => {
      exit = { code, signal };
      reject(new Error(`the worker died: ${JSON.stringify(exit)} (an OOM kill is a SIGKILL)`));
    }));
    died.catch(() => {});
    cleanups.push(async () => {
      if (exit) return;
      const gone = new Promise((r) => worker.once('exit', r));
      worker.kill('SIGTERM');
      await gone;
    });
    await waitFor(() => readFileSync(path.join(outdir, 'heartbeat'), 'utf8').includes('"healthyAt":1'), { timeoutMs: 30_000, what: 'the worker to start' });
    expect(readFileSync(path.join(cg.dir, 'cgroup.procs'), 'utf8').trim().split('\n')).toContain(String(worker.pid));

    const engine = createEngine({ db, redis, queueName, registry: defaultRegistry(), log: silentLog });
    cleanups.push(() => engine.close());
    const t0 = Date.now();
    const { runId } = await engine.trigger('ch.top_dests');
    const run = await Promise.race([died, waitFor(async () => {
      const r = (await db.pool.query('select status, error from etl_runs where id = $1', [runId])).rows[0];
      return ['succeeded', 'failed', 'cancelled'].includes(r.status) ? r : null;
    }, { timeoutMs: 100_000, intervalMs: 250, what: 'the run to finish' })]);
    const secs = (Date.now() - t0) / 1000;
    const peakMb = cg.peak() / 1048576;
    const hwmMb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${worker.pid}/status`, 'utf8'))![1]) / 1024;
    process.stdout.write(`memory-limit: ${ROWS} rows in ${secs.toFixed(1)} s; cgroup v${cg.v} peak ${peakMb.toFixed(0)} MB of ${LIMIT_MB} MB (worker RSS peak ${hwmMb.toFixed(0)} MB), OOM kills ${cg.ooms()}\n`);

    expect(exit).toBeNull();
    expect(cg.ooms()).toBe(0);
    expect(run).toEqual({ status: 'succeeded', error: null });
    expect(await redis.hlen(`cache:${dataset}`)).toBe(ROWS);
    expect(peakMb).toBeLessThan(LIMIT_MB);
  }, 150_000);
});
