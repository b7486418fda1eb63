import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { Redis } from 'ioredis';
import { loadConfigOrExit } from '../config';
import { createDatabase } from '../db/client';
import { createLogger } from '../lib/logger';
import { registerSecret } from '../lib/redact';
import { defaultRegistry, sourceOf } from '../workflows';
import { createServices } from '../steps/services';
import { createEngine } from '../workflows/engine/engine';
import { eventsChannel } from '../workflows/engine/events';
import { createApp } from './app';
import { createEventHub } from './sse';

/** The api process: config, clients, app, server, and a clean exit on SIGTERM/SIGINT. */
const config = loadConfigOrExit();
const log = createLogger({ level: config.LOG_LEVEL, name: 'api' });
for (const secret of [config.ETL_API_TOKEN, config.SESSION_SECRET, config.METRICS_TOKEN]) registerSecret(secret);

const db = createDatabase(config.DATABASE_URL, { applicationName: 'etl-api' });
// Commands fail fast while Redis is away (a request should error, not hang); the engine's
// queue and session lookups share this connection, pub/sub gets its own.
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 2 });
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
const registry = defaultRegistry();
const services = createServices({ config, db, redis, log });
const engine = createEngine({ db, redis, queueName: config.ETL_QUEUE, registry, log });
const hub = await createEventHub(new Redis(config.REDIS_URL), eventsChannel(config.ETL_QUEUE), log);

const webDir = fileURLToPath(new URL('../web/dist', import.meta.url));
const app = createApp({
  db, redis, engine, log, registry,
  config: {
    apiToken: config.ETL_API_TOKEN, sessionCookie: config.SESSION_COOKIE, sessionSecret: config.SESSION_SECRET,
    operatorRoles: config.ETL_OPERATOR_ROLES, metricsToken: config.METRICS_TOKEN,
  },
  subscribeEvents: hub.subscribe,
  sse: { maxStreams: config.SSE_MAX_STREAMS },
  // A pipeline is labelled sandbox when its credential resolves nowhere and a sandbox
  // source stands in for it (the same rule the worker applies).
  sandbox: async (p) => {
    const src = sourceOf(p);
    return src ? services.isSandboxed(src.credential, src.kind) : false;
  },
  webDir: process.env.NODE_ENV !== 'production' && existsSync(webDir) ? webDir : undefined,
});

const server = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, (info) => {
  log.info({ host: info.address, port: info.port, queue: config.ETL_QUEUE, bearerAuth: config.ETL_API_TOKEN !== undefined, sessionCookie: config.SESSION_COOKIE }, 'api listening');
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'api shutting down');
  const deadline = setTimeout(() => process.exit(0), 10_000);
  deadline.unref();
  // SSE streams never end by themselves: closing the hub ends them, so the server can close.
  await hub.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await engine.close();
  await db.close();
  redis.disconnect();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
