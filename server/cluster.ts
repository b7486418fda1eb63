import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import type { Logger } from '../lib/logger';
import type { AppDeps } from './context';

/**
 * API_WORKERS=N: the standalone api as a node:cluster of N processes sharing one port
 * (the seed's "cluster :3000"). The primary only forks, restarts and stops workers, and
 * gathers metrics; each worker is a complete api (server/main.ts). What keeps the
 * processes consistent:
 * - SSE: every worker subscribes to the Redis event channel, so a stream on one process
 *   carries events caused through any other (or by a worker container).
 * - Read cache: each process's cache is invalidated by the same channel, pipeline setting
 *   changes included (`pipeline` events), not only by its own writes.
 * - Metrics: /metrics on any worker asks the primary, which collects every worker's
 *   registry (prom-client's AggregatorRegistry): request counters sum, gauges read from
 *   Postgres/Redis and the event-fed histogram are taken once.
 */

const METRICS_REQ = 'etl:metrics-req';
const METRICS_RES = 'etl:metrics-res';

interface MetricsMessage { type: string; id: number; text?: string; error?: string }

export function runClusterPrimary(o: { workers: number; log: Logger; stopTimeoutMs?: number }): void {
  const { log } = o;
  const aggregator = new client.AggregatorRegistry();
  let stopping = false;
  const recentCrashes: number[] = [];

  const fork = () => cluster.fork();
  for (let i = 0; i < o.workers; i++) fork();

  cluster.on('message', (worker: Worker, msg: MetricsMessage) => {
    if (msg?.type !== METRICS_REQ) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: METRICS_RES, id: msg.id, text }),
      (err: Error) => worker.send({ type: METRICS_RES, id: msg.id, error: err.message }),
    );
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    const now = Date.now();
    recentCrashes.push(now);
    while (recentCrashes.length && now - recentCrashes[0] > 60_000) recentCrashes.shift();
    log.error({ pid: worker.process.pid, code, signal }, 'api worker exited; starting another');
    // A worker that cannot start (bad config, port taken) must not become a fork loop.
    if (recentCrashes.length > o.workers * 5) {
      log.fatal('api workers keep exiting; stopping');
      process.exit(1);
    }
    setTimeout(fork, Math.min(5_000, 200 * recentCrashes.length)).unref();
  });
  log.info({ workers: o.workers }, 'api cluster started');

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'api cluster shutting down');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    const exits = workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of workers) w.process.kill('SIGTERM');
    const deadline = setTimeout(() => {
      for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL');
    }, o.stopTimeoutMs ?? 15_000);
    deadline.unref();
    void Promise.all(exits).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** In a cluster worker: what createApp needs so /metrics answers for the whole cluster. */
export function clusterWorkerMetrics(timeoutMs = 5_000): NonNullable<AppDeps['metricsCluster']> {
  // Constructing it installs the handler that answers the primary with our registries.
  new client.AggregatorRegistry();
  let next = 0;
  const pending = new Map<number, (m: MetricsMessage) => void>();
  process.on('message', (m: MetricsMessage) => {
    if (m?.type === METRICS_RES) pending.get(m.id)?.(m);
  });
  return {
    register(registry) {
      client.AggregatorRegistry.setRegistries([registry]);
    },
    metrics() {
      const id = next++;
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error('the cluster primary did not answer with metrics'));
        }, timeoutMs);
        pending.set(id, (m) => {
          clearTimeout(timer);
          pending.delete(id);
          if (m.error !== undefined) reject(new Error(m.error));
          else resolve(m.text ?? '');
        });
        process.send!({ type: METRICS_REQ, id });
      });
    },
  };
}

export const isClusterWorker = () => cluster.isWorker;
export const isClusterPrimary = () => cluster.isPrimary;
