import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { loadConfigOrExit } from '../config';
import { createLogger } from '../lib/logger';
import { onShutdown } from '../lib/shutdown';
import { clusterWorkerMetrics, isClusterPrimary, isClusterWorker, runClusterPrimary } from './cluster';
import { createEtlApi } from './listener';

/** The api process: config, the api (server/listener.ts), a server, a clean exit on
 *  SIGTERM/SIGINT. With API_WORKERS > 1 this process is a cluster primary (server/cluster.ts). */
const config = loadConfigOrExit();
const log = createLogger({ level: config.LOG_LEVEL, name: 'api' });

if (config.API_WORKERS > 1 && isClusterPrimary()) {
  runClusterPrimary({ workers: config.API_WORKERS, log });
} else {
  const webDir = fileURLToPath(new URL('../web/dist', import.meta.url));
  const api = await createEtlApi(config, {
    log,
    webDir: process.env.NODE_ENV !== 'production' && existsSync(webDir) ? webDir : undefined,
    metricsCluster: isClusterWorker() ? clusterWorkerMetrics() : undefined,
  });

  const server = serve({ fetch: api.app.fetch, port: config.PORT, hostname: config.HOST }, (info) => {
    log.info({ host: info.address, port: info.port, queue: config.ETL_QUEUE, bearerAuth: config.ETL_API_TOKEN !== undefined, sessionCookie: config.SESSION_COOKIE }, 'api listening');
  });

  onShutdown(log, async (signal) => {
    log.info({ signal }, 'api shutting down');
    // SSE streams never end by themselves: end them, so the server can close.
    await api.endStreams();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await api.close();
  }, 10_000);
}
