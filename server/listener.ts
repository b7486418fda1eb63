import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { Redis } from 'ioredis';
import type { Config } from '../config';
import { createDeps } from '../deps';
import type { Logger } from '../lib/logger';
import { registerSecret } from '../lib/redact';
import { createEngine } from '../workflows/engine/engine';
import { eventsChannel } from '../workflows/engine/events';
import { createApp } from './app';
import type { AppDeps } from './context';
import { createEventHub } from './sse';

/**
 * The api as something to run inside another Node server: SP0's api (a Fastify cluster
 * on :3000) can serve /api/etl/* from its own processes instead of a container of ours.
 * `createEtlApi` builds what server/main.ts serves (clients, engine, event hub, app);
 * `listener` is a plain Node `(req, res)` request listener; `etlFastifyPlugin` mounts it
 * on a Fastify instance. README: "Adding SP1 to an SP0 host".
 */

// What a host needs besides the api itself: read our env vars, and a logger like ours.
export { loadConfig } from '../config';
export { createLogger } from '../lib/logger';

export type NodeListener = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface EtlApi {
  app: ReturnType<typeof createApp>;
  listener: NodeListener;
  /** Ends open SSE streams (they never end by themselves), so the host server can close. */
  endStreams(): Promise<void>;
  /** Ends the streams, then closes the clients: call once the host server has closed. */
  close(): Promise<void>;
}

export interface EtlApiOptions {
  log: Logger;
  /** Directory of the built /etl page, to serve it from the api too (dev). */
  webDir?: string;
  /** Origins allowed to send cookie-authenticated mutations besides the request's own host. */
  allowedOrigins?: string[];
  /** Set by server/cluster.ts in a cluster worker. */
  metricsCluster?: AppDeps['metricsCluster'];
}

export async function createEtlApi(config: Config, o: EtlApiOptions): Promise<EtlApi> {
  for (const secret of [config.ETL_API_TOKEN, config.SESSION_SECRET, config.METRICS_TOKEN, config.ALERT_WEBHOOK_SECRET]) registerSecret(secret);
  const { db, redis, services, pipelines, close } = createDeps(config, 'api', { log: o.log });
  const { log } = o;
  const engine = createEngine({ db, redis, queueName: config.ETL_QUEUE, registry: pipelines.registry, log });
  // Pub/sub needs a connection of its own.
  const hub = await createEventHub(new Redis(config.REDIS_URL), eventsChannel(config.ETL_QUEUE), log);

  const app = createApp({
    db, redis, engine, log, registry: pipelines.registry,
    config: {
      apiToken: config.ETL_API_TOKEN, sessionCookie: config.SESSION_COOKIE, allowedOrigins: o.allowedOrigins,
      sessionSecret: config.SESSION_SECRET, operatorRoles: config.ETL_OPERATOR_ROLES, metricsToken: config.METRICS_TOKEN,
      alertWebhookConfigured: config.ALERT_WEBHOOK_URL !== undefined,
    },
    subscribeEvents: hub.subscribe,
    sse: { maxStreams: config.SSE_MAX_STREAMS },
    // A pipeline is labelled sandbox when its credential resolves nowhere and a sandbox
    // source stands in for it (the same rule the worker applies).
    sandbox: async (p) => {
      const src = pipelines.sourceOf(p);
      return src ? services.isSandboxed(src.credential, src.kind) : false;
    },
    webDir: o.webDir,
    metricsCluster: o.metricsCluster,
  });
  return {
    app,
    listener: getRequestListener(app.fetch),
    endStreams: () => hub.close(),
    async close() {
      await hub.close();
      await engine.close();
      await close();
    },
  };
}

/** The parts of a Fastify instance the plugin uses (fastify stays a dependency of the host, not of ours). */
export interface FastifyLike {
  removeAllContentTypeParsers(): void;
  addContentTypeParser(type: string, parser: (req: unknown, payload: unknown, done: (err: Error | null, body?: unknown) => void) => void): void;
  all(path: string, handler: (req: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => void): unknown;
}

/**
 * A Fastify plugin serving /api/etl/* with the ETL api: `await fastify.register(etlFastifyPlugin(api))`.
 * Inside the plugin's own context Fastify leaves bodies unread (our routes validate and
 * limit them) and hands the raw request and response to the listener, which also streams SSE.
 */
export function etlFastifyPlugin(api: Pick<EtlApi, 'listener'>, prefix = '/api/etl') {
  // eslint-disable-next-line @typescript-eslint/require-await -- async turns a throw (a duplicate route) into the rejection Fastify's plugin loader expects; avvio does not catch a synchronous one
  return async function etlApi(fastify: FastifyLike): Promise<void> {
    fastify.removeAllContentTypeParsers();
    fastify.addContentTypeParser('*', (_req, _payload, done) => done(null));
    const handler = (req: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => {
      reply.hijack();
      void api.listener(req.raw, reply.raw);
    };
    fastify.all(prefix, handler);
    fastify.all(`${prefix}/*`, handler);
  };
}
