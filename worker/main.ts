import { loadConfigOrExit } from '../config';
import { createDeps } from '../deps';
import { registerSecret } from '../lib/redact';
import { onShutdown } from '../lib/shutdown';
import { startWorkerRuntime } from './worker';

/** The worker process: config, clients, the worker runtime; SIGTERM hands steps back. */
const config = loadConfigOrExit();
registerSecret(config.ALERT_WEBHOOK_SECRET);
const { log, db, services, pipelines, close } = createDeps(config, 'worker');
const rt = await startWorkerRuntime({
  db, redisUrl: config.REDIS_URL, queueName: config.ETL_QUEUE, registry: pipelines.registry, services, log,
  concurrency: config.WORKER_CONCURRENCY, scheduler: {}, retentionDays: config.CHECKPOINT_RETENTION_DAYS,
  heartbeat: { file: config.WORKER_HEARTBEAT_FILE },
  alerts: {
    webhookUrl: config.ALERT_WEBHOOK_URL, secret: config.ALERT_WEBHOOK_SECRET, publicUrl: config.ETL_PUBLIC_URL,
    pollMs: config.ALERT_POLL_MS, backoffBaseMs: config.ALERT_BACKOFF_BASE_MS, backoffMaxMs: config.ALERT_BACKOFF_MAX_MS,
    timeoutMs: config.ALERT_TIMEOUT_MS, leaseMs: config.ALERT_LEASE_MS, retryForMs: config.ALERT_RETRY_FOR_MS, evalMs: config.ALERT_EVAL_MS,
  },
});
log.info({ queue: config.ETL_QUEUE, concurrency: config.WORKER_CONCURRENCY }, 'worker started');

const grace = Number(process.env.SHUTDOWN_GRACE_MS ?? 20_000);
onShutdown(log, async (signal) => {
  log.info({ signal, graceMs: grace }, 'worker shutting down: no new jobs; running steps finish or are handed back');
  await rt.close(grace);
  await close();
}, grace + 15_000);
