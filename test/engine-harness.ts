import { Redis } from 'ioredis';
import type { Database } from '../db/client';
import * as runs from '../db/runs';
import * as stepState from '../db/steps';
import { createRegistry } from '../workflows/engine/define';
import { createEngine, type Engine } from '../workflows/engine/engine';
import { startWorkerRuntime, type WorkerRuntime } from '../worker/worker';
import { demoWorkflow } from './fixtures/demo';
import { freshDatabase, REDIS_URL, silentLog, uid, waitFor } from './helpers';

export const demoSeed = (id = 'demo', config: Record<string, unknown> = {}) => ({
  id, workflow: 'demo', description: 'demo', cron: '* * * * *', timezone: 'UTC', config,
});

/** Real Postgres database, real Redis, a unique queue and key prefix: one per test file. */
export interface Harness {
  db: Database & { url: string; drop(): Promise<void> };
  redis: Redis;
  queueName: string;
  prefix: string;
  engine: Engine;
  worker?: WorkerRuntime;
  redisUrl: string;
  execs(runId: string): Promise<Record<string, number>>;
  waitRun(runId: string, status: string, timeoutMs?: number): Promise<RunRow>;
  run(runId: string): Promise<RunRow>;
  setConfig(pipelineId: string, config: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}

export interface RunRow {
  status: string;
  trigger: string;
  parentRunId: string | null;
  rows: unknown;
  error: string | null;
  generation: number;
  steps: { key: string; position: number; status: string; attempts: number; error: string | null; rowsIn: number | null; rowsOut: number | null; output: unknown }[];
  attempts: { stepKey: string; attempt: number; status: string; error: string | null }[];
}

export async function createHarness(opts: { redisUrl?: string; pgBase?: string; startWorker?: boolean; seeds?: ReturnType<typeof demoSeed>[] } = {}): Promise<Harness> {
  const redisUrl = opts.redisUrl ?? REDIS_URL;
  const db = await freshDatabase(opts.seeds ?? [demoSeed()], opts.pgBase);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  const queueName = uid('q');
  const prefix = uid('demo');
  const registry = createRegistry([demoWorkflow]);
  const engine = createEngine({ db, redis, queueName, registry, log: silentLog });
  const worker = opts.startWorker === false ? undefined : await startWorkerRuntime({
    db, redisUrl, queueName, registry, services: { redis, prefix }, log: silentLog,
    reconcileIntervalMs: 500, reconcileGraceMs: 1_000, cancelPollMs: 500, heartbeat: {},
  });
  const run = async (runId: string): Promise<RunRow> => {
    const r = await db.pool.query(
      'select status, trigger, parent_run_id, rows, error, generation from etl_runs where id = $1', [runId]);
    const s = await db.pool.query(
      'select key, position, status, attempts, error, rows_in, rows_out, output from etl_run_steps where run_id = $1 order by position', [runId]);
    const a = await db.pool.query(
      'select step_key, attempt, status, error from etl_step_attempts where run_id = $1 order by step_key, attempt', [runId]);
    const row = r.rows[0];
    return {
      status: row.status, trigger: row.trigger, parentRunId: row.parent_run_id, rows: row.rows, error: row.error, generation: row.generation,
      steps: s.rows.map((x) => ({ key: x.key, position: x.position, status: x.status, attempts: x.attempts, error: x.error, rowsIn: x.rows_in, rowsOut: x.rows_out, output: x.output })),
      attempts: a.rows.map((x) => ({ stepKey: x.step_key, attempt: x.attempt, status: x.status, error: x.error })),
    };
  };
  return {
    db, redis, queueName, prefix, engine, worker, redisUrl, run,
    async execs(runId) {
      const out: Record<string, number> = {};
      for (const k of ['fetch', 'transform', 'write']) out[k] = Number((await redis.get(`${prefix}:exec:${runId}:${k}`)) ?? 0);
      return out;
    },
    async waitRun(runId, status, timeoutMs = 20_000) {
      return waitFor(async () => {
        const r = await run(runId);
        return r.status === status ? r : null;
      }, { timeoutMs, what: `run ${runId} to be ${status}` });
    },
    async setConfig(pipelineId, config) {
      await db.pool.query('update etl_pipelines set config = $2 where id = $1', [pipelineId, JSON.stringify(config)]);
    },
    async close() {
      await worker?.close(1_000);
      await engine.close();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      await engine.queue.obliterate({ force: true }).catch(() => {});
      redis.disconnect();
      await db.drop();
    },
  };
}

export { runs, stepState };
