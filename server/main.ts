import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { Redis } from 'ioredis';
import { loadConfigOrExit } from '../config';
import { createDeps } from '../deps';
import { registerSecret } from '../lib/redact';
import { onShutdown } from '../lib/shutdown';
import { createEngine } from '../workflows/engine/engine';
import { eventsChannel } from '../workflows/engine/events';
import { createApp } from './app';
import { createEventHub } from './sse';

/** The api process: config, clients, app, server, and a clean exit on SIGTERM/SIGINT. */
const config = loadConfigOrExit();
registerSecret(config.ETL_API_TOKEN);
const { log, db, redis, services, pipelines, close } = createDeps(config, 'api');
const engine = createEngine({ db, redis, queueName: config.ETL_QUEUE, registry: pipelines.registry, log });
// Pub/sub needs a connection of its own.
const hub = await createEventHub(new Redis(config.REDIS_URL), eventsChannel(config.ETL_QUEUE), log);

const webDir = fileURLToPath(new URL('../web/dist', import.meta.url));
const app = createApp({
  db, redis, engine, log, registry: pipelines.registry,
  config: { apiToken: config.ETL_API_TOKEN, sessionCookie: config.SESSION_COOKIE },
  subscribeEvents: hub.subscribe,
  // A pipeline is labelled sandbox when its credential resolves nowhere and a sandbox
  // source stands in for it (the same rule the worker applies).
  sandbox: async (p) => {
    const src = pipelines.sourceOf(p);
    return src ? services.isSandboxed(src.credential, src.kind) : false;
  },
  webDir: process.env.NODE_ENV !== 'production' && existsSync(webDir) ? webDir : undefined,
});

const server = serve({ fetch: app.fetch, port: config.PORT }, (info) => {
  log.info({ port: info.port, queue: config.ETL_QUEUE, bearerAuth: config.ETL_API_TOKEN !== undefined, sessionCookie: config.SESSION_COOKIE }, 'api listening');
});

onShutdown(log, async (signal) => {
  log.info({ signal }, 'api shutting down');
  // SSE streams never end by themselves: closing the hub ends them, so the server can close.
  await hub.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await engine.close();
  await close();
}, 10_000);
