import { Redis } from 'ioredis';
import { createDatabase } from '../db/client';
import { migrateDatabase } from '../db/migrate';
import { createLogger } from '../lib/logger';
import { createRegistry } from '../workflows/engine/define';
import { createEngine } from '../workflows/engine/engine';
import { createScheduler } from '../worker/scheduler';
import { benchWorkflow } from './engine-workflow';
import { dropDatabase, now, percentile, type BenchRow } from './util';

/**
 * 1,000 enabled pipelines on a one-minute cron: how long after the tick is each one's run
 * enqueued? The scheduler's clock is shifted so the minute boundary falls on "now"; lag
 * is measured from that instant to each tick's resolution in the tick log.
 */
const PG = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const N = Number(process.env.BENCH_PIPELINES ?? 1_000);

export async function benchScheduler(): Promise<BenchRow[]> {
  const dbName = `etl_bench_sched_${process.pid}`;
  const url = `${PG}/${dbName}`;
  const seeds = Array.from({ length: N }, (_, i) => ({
    id: `p${i}`, workflow: 'bench-noop', description: '', cron: '* * * * *', timezone: 'Europe/Kyiv', config: {},
  }));
  await migrateDatabase(url, seeds);
  const db = createDatabase(url, { max: 16 });
  const redis = new Redis(REDIS, { maxRetriesPerRequest: null });
  const log = createLogger({ level: 'silent' });
  const engine = createEngine({ db, redis, queueName: `bench-sched-${process.pid}`, registry: createRegistry([benchWorkflow]), log });
  await db.pool.query('update etl_pipelines set enabled = true');

  const M = Math.ceil(Date.now() / 60_000) * 60_000 + 60_000;
  let offset = 0;
  const s = createScheduler({ db, engine, log, workerId: 'bench', now: () => Date.now() + offset });
  // First pass just before the tick: cursors start there, nothing is due yet.
  offset = M - 500 - Date.now();
  await s.pass();
  // Wait (virtually) for the tick, then one pass at tick + 5 ms, as the aligned loop does.
  offset = M + 5 - Date.now();
  const tickReal = Date.now() - 5;
  const t0 = now();
  await s.pass();
  const passMs = now() - t0;
  const { rows } = await db.pool.query(
    `select (extract(epoch from recorded_at) * 1000)::float8 as at, outcome from etl_schedule_ticks where scheduled_for = $1`, [new Date(M)]);
  const lags = rows.map((r) => r.at - tickReal);
  const fired = rows.filter((r) => r.outcome === 'fired').length;

  await engine.queue.obliterate({ force: true });
  await engine.close();
  redis.disconnect();
  await db.close();
  await dropDatabase(PG, dbName);

  const b = `scheduler: ${N} pipelines, 1-min cron`;
  return [
    { bench: b, metric: 'runs fired for the tick', value: fired, unit: 'runs', note: `of ${N}` },
    { bench: b, metric: 'p50 lag tick→run enqueued', value: percentile(lags, 50), unit: 'ms' },
    { bench: b, metric: 'p99 lag tick→run enqueued', value: percentile(lags, 99), unit: 'ms', note: 'target ≤ 2000' },
    { bench: b, metric: 'scheduler pass duration', value: passMs, unit: 'ms' },
  ];
}
