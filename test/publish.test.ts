import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { updatePipeline } from '../db/pipelines';
import * as stepState from '../db/steps';
import { StepAbortedError } from '../lib/errors';
import { startBigQueryEmulator, type BigQueryEmulator } from '../sandbox/bigquery-emulator';
import { sandboxBigQueryTables } from '../sandbox/data';
import { queryWriteStep, type QueryConfig } from '../steps/query-steps';
import { createServices, type Services } from '../steps/services';
import { createEngine, type Engine } from '../workflows/engine/engine';
import { defaultRegistry, pipelineSeeds } from '../workflows/index';
import { startWorkerRuntime, type WorkerRuntime } from '../worker/worker';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

/**
 * Data trust in the sinks (SPEC §5), end to end through the engine against real Redis and
 * Postgres: a run's datasets publish together or not at all; bq.projects' Postgres table
 * mirrors the source and commits before Redis; a cancelled or superseded attempt publishes
 * nowhere, even when it ignores its signal; a worker killed between two dataset builds
 * leaves every old dataset in place.
 */
const prefix = uid('pub');
let db: Awaited<ReturnType<typeof freshDatabase>>;
let redis: Redis;
let bq: BigQueryEmulator;
let services: Services;
let worker: WorkerRuntime;
let engine: Engine;
/** When set, the write step's swap script (EVAL) fails: Redis is "down" after the Postgres commit. */
let failSwap = false;

const ds = (name: string) => `${prefix}:${name}`;
const key = (name: string) => `cache:${ds(name)}`;
const REFERENCE = ['bq:reference:countries', 'bq:reference:airports', 'bq:reference:airlines'];
/** The fields of a query pipeline's seed config these tests change. */
type SeedConfig = Record<string, unknown> & { datasets: { dataset: string; sql: string }[] };
const seedConfig = (id: string) => structuredClone(pipelineSeeds.find((p) => p.id === id)!.config) as SeedConfig;

beforeAll(async () => {
  bq = await startBigQueryEmulator({ tables: sandboxBigQueryTables({ projects: 3_000 }) });
  const seeds = pipelineSeeds.filter((p) => p.id.startsWith('bq.')).map((p) => {
    const c = structuredClone(p.config) as SeedConfig;
    for (const d of c.datasets) d.dataset = ds(d.dataset);
    return { ...p, config: c };
  });
  db = await freshDatabase(seeds);
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const flaky = new Proxy(redis, {
    get(target, prop) {
      if (prop === 'eval' && failSwap) return () => Promise.reject(new Error('Connection is closed (injected)'));
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const config = loadConfig({ DATABASE_URL: db.url, REDIS_URL, SANDBOX_BIGQUERY_URL: bq.url });
  services = createServices({ config, db, redis: flaky, log: silentLog, env: {} });
  const queueName = uid('q');
  worker = await startWorkerRuntime({ db, redisUrl: REDIS_URL, queueName, registry: defaultRegistry(), services, log: silentLog });
  engine = createEngine({ db, redis, queueName, registry: defaultRegistry(), log: silentLog });
}, 120_000);

afterAll(async () => {
  await worker?.close(1_000);
  await engine?.queue.obliterate({ force: true }).catch(() => {});
  await engine?.close();
  await services?.close();
  const runIds = (await db.pool.query('select id from etl_runs')).rows.map((r) => r.id as string);
  const keys = [...await redis.keys(`cache:${prefix}:*`), ...runIds.map((id) => `etl:fence:${id}:write`)];
  if (keys.length) await redis.unlink(...keys);
  redis?.disconnect();
  await db?.drop();
  await bq?.close();
});

async function waitForRun(runId: string, expected: string, timeoutMs = 60_000) {
  const row = await waitFor(async () => {
    const r = (await db.pool.query('select status, error from etl_runs where id = $1', [runId])).rows[0];
    return r && ['succeeded', 'failed', 'cancelled'].includes(r.status) ? r : null;
  }, { timeoutMs, what: `run ${runId} to finish` });
  expect(row.status, row.error ?? '').toBe(expected);
  return { runId, error: row.error as string | null };
}
async function runToEnd(e: Engine, pipelineId: string, expected = 'succeeded', timeoutMs?: number) {
  const { runId } = await e.trigger(pipelineId);
  return waitForRun(runId, expected, timeoutMs);
}
const meta = async (name: string) => JSON.parse((await redis.get(`${key(name)}:meta`)) ?? 'null');
async function setProjectsLimit(limit: number | null) {
  const c = seedConfig('bq.projects');
  c.datasets[0].dataset = ds(c.datasets[0].dataset);
  if (limit !== null) c.datasets[0].sql += ` LIMIT ${limit}`;
  await updatePipeline(db.pool, 'bq.projects', { config: c });
}
const pgIds = async () => (await db.pool.query('select project_id from bq_projects order by 1')).rows.map((r) => r.project_id as string);
const redisIds = async () => (await redis.hkeys(key('bq:projects'))).sort();
/** Everything a reader could see of a set of datasets: values (DUMP), metas, TTLs. */
async function snapshot(names: readonly string[]) {
  const out: Record<string, unknown> = {};
  for (const n of names) {
    out[n] = { dump: (await redis.dumpBuffer(key(n)))?.toString('hex') ?? null, meta: await redis.get(`${key(n)}:meta`), ttl: await redis.pttl(key(n)) };
  }
  return out;
}

describe('bq.reference: all datasets of a run publish together', () => {
  it('a poller reading all three metas every few ms never sees two runIds', async () => {
    const first = await runToEnd(engine, 'bq.reference');
    const reader = new Redis(REDIS_URL);
    const seen = new Map<string, number>();
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const metas = await reader.mget(...REFERENCE.map((n) => `${key(n)}:meta`));
        const ids = metas.map((m) => (m ? JSON.parse(m).runId as string : 'none'));
        const state = [...new Set(ids)].join('+');
        seen.set(state, (seen.get(state) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const second = await runToEnd(engine, 'bq.reference');
    await new Promise((r) => setTimeout(r, 20));
    polling = false;
    await poll;
    reader.disconnect();
    // Only whole sets: the first run's three metas, then the second run's three.
    expect([...seen.keys()].sort()).toEqual([first.runId, second.runId].sort());
    expect(seen.get(first.runId)).toBeGreaterThan(10); // the poller really polled during the run
    for (const n of REFERENCE) {
      const m = await meta(n);
      expect(m).toMatchObject({ runId: second.runId, pipelineId: 'bq.reference' });
      expect(m.rows).toBe(await redis.hlen(key(n))); // meta.rows = the hash's fields
    }
  });
});

describe('bq.projects: Postgres mirrors the source, then Redis', () => {
  it('3 projects gone from the source are gone from both stores', async () => {
    await setProjectsLimit(null);
    await runToEnd(engine, 'bq.projects');
    const before = await pgIds();
    expect(before).toHaveLength(3_000);
    expect(await redisIds()).toEqual(before);
    await setProjectsLimit(2_997);
    const r = await runToEnd(engine, 'bq.projects');
    const after = await pgIds();
    expect(after).toHaveLength(2_997);
    const gone = before.filter((id) => !after.includes(id));
    expect(gone).toHaveLength(3);
    expect(await redisIds()).toEqual(after);
    for (const id of gone) expect(await redis.hexists(key('bq:projects'), id)).toBe(0);
    expect(await meta('bq:projects')).toMatchObject({ runId: r.runId, rows: 2_997 });
    // Recorded in the same transaction, for GET /datasets.
    expect((await db.pool.query(`select pipeline_id, run_id, rows from etl_table_sinks where table_name = 'bq_projects'`)).rows)
      .toEqual([{ pipeline_id: 'bq.projects', run_id: r.runId, rows: 2_997 }]);
  });

  it('an 80% shrink publishes to neither store', async () => {
    const pgBefore = (await db.pool.query('select * from bq_projects order by project_id')).rows;
    const redisBefore = await snapshot(['bq:projects']);
    await setProjectsLimit(599); // 20% of 2,997
    const r = await runToEnd(engine, 'bq.projects', 'failed');
    expect(r.error).toMatch(/599 rows is less than 50% of the last good run's 2,997 rows/);
    expect((await db.pool.query('select * from bq_projects order by project_id')).rows).toEqual(pgBefore);
    expect(await snapshot(['bq:projects'])).toEqual(redisBefore);
  });

  it('a Redis failure after the Postgres commit fails the run; a retry of write makes both stores equal', async () => {
    await setProjectsLimit(2_990);
    failSwap = true;
    let runId: string;
    try {
      ({ runId } = await engine.trigger('bq.projects'));
      await waitForRun(runId, 'failed', 90_000);
    } finally {
      failSwap = false;
    }
    const write = (await db.pool.query(`select status, attempts, error from etl_run_steps where run_id = $1 and key = 'write'`, [runId])).rows[0];
    expect(write).toMatchObject({ status: 'failed', attempts: 3 });
    expect(write.error).toMatch(/injected/);
    // Postgres committed (it comes first), Redis kept the previous version.
    expect(await pgIds()).toHaveLength(2_990);
    expect(await redisIds()).toHaveLength(2_997);
    await engine.retryStep(runId, 'write');
    await waitForRun(runId, 'succeeded');
    expect(await redisIds()).toEqual(await pgIds());
    expect(await meta('bq:projects')).toMatchObject({ runId, rows: 2_990 });
  }, 120_000);
});

describe('the publish fence', () => {
  /** A run of bq.projects whose fetch and transform "succeeded" with `outputs`, its write
   *  claimed (attempt 1) as a worker would, on a queue no worker reads. */
  async function runWithClaimedWrite(e: Engine, outputs: Record<string, unknown>) {
    const { runId } = await e.trigger('bq.projects');
    await db.pool.query(
      `update etl_run_steps set status = 'succeeded', output = ($2::jsonb)->key where run_id = $1 and key in ('fetch', 'transform')`,
      [runId, JSON.stringify(outputs)],
    );
    const claimed = await stepState.claimStep(db.pool, { runId, key: 'write', generation: 0, jobId: `${runId}.g0.write`, worker: 'test' });
    expect(claimed?.attempt).toBe(1);
    return { runId, claimed: claimed! };
  }
  /** Calls the write step as a worker would, with a signal that never fires: the attempt
   *  ignores its cancellation. */
  async function runWrite(runId: string, attempt: number, claimed: stepState.ClaimedStep) {
    const config = { ...(claimed.config as QueryConfig), check: { allowEmpty: false, minFractionOfLast: 0 } };
    return queryWriteStep.run({
      runId, pipelineId: 'bq.projects', stepKey: 'write', attempt, signal: new AbortController().signal, config,
      params: {}, input: queryWriteStep.input!.parse(claimed.outputs.transform), outputs: claimed.outputs, checkpoint: null,
      saveCheckpoint: async () => {}, reportRows: () => {}, event: () => {}, progress: () => {}, services, log: silentLog,
    });
  }

  it('a cancelled attempt that ignores its signal cannot publish; nor can a superseded one', async () => {
    const idle = createEngine({ db, redis, queueName: uid('idle'), registry: defaultRegistry(), log: silentLog });
    try {
      // Staged data different from what is published: the 599-row load refused above.
      const small = (await db.pool.query(
        `select s.run_id from etl_run_steps s join etl_runs r on r.id = s.run_id
         where r.pipeline_id = 'bq.projects' and s.key = 'transform' and s.rows_out = 599`,
      )).rows[0].run_id;
      const outputs = Object.fromEntries((await db.pool.query(
        `select key, output from etl_run_steps where run_id = $1 and key in ('fetch', 'transform')`, [small],
      )).rows.map((r) => [r.key, r.output]));
      const pgBefore = await pgIds();
      const redisBefore = await snapshot(['bq:projects']);

      const a = await runWithClaimedWrite(idle, outputs);
      await idle.cancel(a.runId);
      await expect(runWrite(a.runId, 1, a.claimed)).rejects.toThrow(StepAbortedError);
      await expect(runWrite(a.runId, 1, a.claimed)).rejects.toThrow(/not publishing: the run was cancelled/);
      expect(await pgIds()).toEqual(pgBefore);
      expect(await snapshot(['bq:projects'])).toEqual(redisBefore);

      // Taken over (a stall): attempt 2 is the live one; attempt 1 keeps running regardless.
      const b = await runWithClaimedWrite(idle, outputs);
      const again = await stepState.claimStep(db.pool, { runId: b.runId, key: 'write', generation: 0, jobId: `${b.runId}.g0.write`, worker: 'other' });
      expect(again?.attempt).toBe(2);
      await expect(runWrite(b.runId, 1, b.claimed)).rejects.toThrow(/attempt 1 was superseded by attempt 2/);
      expect(await pgIds()).toEqual(pgBefore);
      expect(await snapshot(['bq:projects'])).toEqual(redisBefore);
      // The live attempt publishes to both stores.
      await runWrite(b.runId, 2, again!);
      expect(await pgIds()).toHaveLength(599);
      expect(await redisIds()).toEqual(await pgIds());
      await idle.cancel(b.runId);
    } finally {
      await idle.queue.obliterate({ force: true }).catch(() => {});
      await idle.close();
    }
  });
});

describe('a worker killed between two dataset builds', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });
  async function spawnWorker(queueName: string, extra: Record<string, string> = {}) {
    const file = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures', 'pipeline-worker.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      env: { ...process.env, DATABASE_URL: db.url, REDIS_URL, SANDBOX_BIGQUERY_URL: bq.url, ETL_QUEUE: queueName, ...extra },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`pipeline worker exited ${code}: ${err.slice(-2000)}`)));
    });
    return child;
  }

  it('leaves every old dataset intact; the resumed run publishes all new ones', async () => {
    const queueName = uid('kq');
    const e = createEngine({ db, redis, queueName, registry: defaultRegistry(), log: silentLog });
    try {
      const before = await snapshot(REFERENCE);
      const oldRunId = (await meta(REFERENCE[0])).runId;
      const mark = `${prefix}:paused`;
      const a = await spawnWorker(queueName, { PAUSE_BUILD: 'airports', MARK_KEY: mark });
      const { runId } = await e.trigger('bq.reference');
      await waitFor(async () => (await redis.get(mark)) === String(a.pid), { timeoutMs: 60_000, what: 'the write to pause before airports' });
      // countries is built (under its build key), airports not started: kill here.
      const [countriesBuild] = await redis.keys(`${key(REFERENCE[0])}:tmp:${runId}.*`);
      expect(await redis.hlen(countriesBuild)).toBeGreaterThan(0);
      const exited = new Promise((r) => a.once('exit', r));
      a.kill('SIGKILL');
      await exited;
      expect(await snapshot(REFERENCE)).toEqual(before);
      await spawnWorker(queueName);
      await waitForRun(runId, 'succeeded', 90_000);
      for (const n of REFERENCE) {
        const m = await meta(n);
        expect(m.runId).toBe(runId);
        expect(m.runId).not.toBe(oldRunId);
        expect(m.rows).toBe(await redis.hlen(key(n)));
      }
      // The attempt that took over continued the build and cleaned up after the publish.
      expect(await redis.keys(`cache:${prefix}:*:tmp:*`)).toEqual([]);
      const attempts = (await db.pool.query(`select attempt, status from etl_step_attempts where run_id = $1 and step_key = 'write' order by attempt`, [runId])).rows;
      expect(attempts).toEqual([{ attempt: 1, status: 'lost' }, { attempt: 2, status: 'succeeded' }]);
    } finally {
      await e.queue.obliterate({ force: true }).catch(() => {});
      await e.close();
    }
  }, 150_000);
});
