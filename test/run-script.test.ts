import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PG_BASE, REDIS_URL, uid, waitFor } from './helpers';
import { freePort } from './services';

/**
 * scripts/run.mjs, behind `npm run api|worker|migrate`: from a checkout it compiles the one
 * entry with esbuild (in a short-lived child) into .run/<name>.mjs and runs that in its own process (no tsx loader
 * thread), reusing the output while no source is newer.
 */
const root = path.resolve(import.meta.dirname, '..');
const dbName = uid('etl_runscript');

afterAll(async () => {
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  await admin.query(`drop database if exists "${dbName}" with (force)`);
  await admin.end();
});

const run = (...args: string[]) => spawnSync(process.execPath, ['scripts/run.mjs', ...args], {
  cwd: root, encoding: 'utf8', timeout: 60_000,
  env: { ...process.env, ETL_RUN_FROM: 'source', DATABASE_URL: `${PG_BASE}/${dbName}` },
});

describe('scripts/run.mjs', () => {
  it('compiles the entry to .run/ and runs it; a second start reuses the compiled file', () => {
    const first = run('migrate');
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout).toContain(`migrated 127.0.0.1:5432/${dbName}`);
    const out = path.join(root, '.run', 'migrate.mjs');
    expect(existsSync(out)).toBe(true);
    expect(existsSync(`${out}.map`)).toBe(true);
    const built = statSync(out).mtimeMs;

    const second = run('migrate');
    expect(second.status).toBe(0);
    expect(statSync(out).mtimeMs).toBe(built);
  });

  it('starts the api from the source: it answers /healthz and stops on SIGTERM', async () => {
    expect(run('migrate').status).toBe(0);
    const port = await freePort();
    const child = spawn(process.execPath, ['scripts/run.mjs', 'api'], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ETL_RUN_FROM: 'source', PORT: String(port), DATABASE_URL: `${PG_BASE}/${dbName}`, REDIS_URL, ETL_QUEUE: uid('q'), ETL_API_TOKEN: '' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const health = await waitFor(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r, () => undefined), { timeoutMs: 30_000, what: `the api to listen: ${out}` });
      expect(health.status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/etl`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(existsSync(path.join(root, '.run', 'api.mjs'))).toBe(true);
  });

  it('refuses an unknown entry with a usage line', () => {
    const r = run('../../etc/passwd');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('usage: node scripts/run.mjs api|worker|migrate');
  });
});
