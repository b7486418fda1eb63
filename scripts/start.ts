import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfigOrExit } from '../config';
import { migrateDatabase } from '../db/migrate';
import { startSandbox } from '../sandbox/index';
import { SANDBOX_YESPO_KEY } from '../steps/services';
import { buildWeb } from '../web/build';
import { pipelines, pipelineSeeds } from '../workflows/index';

/**
 * `npm start`: the whole platform for a newcomer. Checks Postgres and Redis, migrates,
 * builds the page, starts the sandbox sources (used by every pipeline that has no
 * credential), then the api and the worker; prints where to go; Ctrl-C stops it all.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const config = loadConfigOrExit();
const say = (line: string) => process.stdout.write(`${line}\n`);

function where(url: string) {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol.startsWith('redis') ? 6379 : 5432)}`;
}

async function checkServices(): Promise<void> {
  const admin = new URL(config.DATABASE_URL);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.end();
  } catch {
    say(`Postgres is not reachable at ${where(config.DATABASE_URL)} (DATABASE_URL). Start it, e.g. ` +
      '`pg_ctlcluster 15 main start`, or `docker compose up -d postgres redis`, then run `npm start` again.');
    process.exit(1);
  }
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    await redis.ping();
    redis.disconnect();
  } catch {
    say(`Redis is not reachable at ${where(config.REDIS_URL)} (REDIS_URL). Start it, e.g. ` +
      '`redis-server --daemonize yes`, or `docker compose up -d postgres redis`, then run `npm start` again.');
    process.exit(1);
  }
}

await checkServices();
await migrateDatabase(config.DATABASE_URL, pipelineSeeds);
await buildWeb(path.join(root, 'web/dist'));
const sandbox = await startSandbox({ pipelines, yespoApiKey: SANDBOX_YESPO_KEY });
const token = process.env.ETL_API_TOKEN || `dev-${randomBytes(12).toString('hex')}`;
// One machine, one user: the api listens on loopback only unless HOST says otherwise.
const host = process.env.HOST || '127.0.0.1';
const env = { ...process.env, ...sandbox.env, ETL_API_TOKEN: token, HOST: host, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' };

const children: ChildProcess[] = [];
function run(name: string, file: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, file)], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  child.once('exit', (code, signal) => {
    if (!stopping) {
      say(`${name} exited (${signal ?? code}); stopping.`);
      void stop(1);
    }
  });
  children.push(child);
}

let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  })));
  await sandbox.close();
  say('stopped.');
  process.exit(code);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

run('api', 'server/main.ts');
run('worker', 'worker/main.ts');

const loopbackOrAll = ['127.0.0.1', '::1', 'localhost', '0.0.0.0', '::'].includes(host);
const base = `http://${loopbackOrAll ? 'localhost' : host.includes(':') ? `[${host}]` : host}:${config.PORT}`;
const deadline = Date.now() + 60_000;
while (Date.now() < deadline && !stopping) {
  const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
  if (ok) break;
  await new Promise((r) => setTimeout(r, 250));
}
say('');
say(`  ETL platform is up:   ${base}/etl`);
say(`  Log in with token:    ${token}`);
say(`  Sources: pipelines without credentials read the built-in sandbox (labelled "sandbox").`);
say('  Ctrl-C stops everything.');
say('');
