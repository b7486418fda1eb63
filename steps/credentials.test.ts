import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redact } from '../lib/redact';
import { createCredentials, envVarFor, requireCredential } from './credentials';
import { NonRetryableError } from '../lib/errors';

/** Credential resolution: the shared service over real HTTP, then env, then a clear error. */
let server: Server;
let url = '';
const hits: { path: string; auth: string | undefined }[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push({ path: req.url!, auth: req.headers.authorization });
    if (req.url === '/credentials/yespo%2FOVAGO') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiKey: 'from-service-key-123' }));
    } else if (req.url === '/credentials/broken') res.writeHead(500).end('boom');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('credentials', () => {
  it('names env vars as the contract says', () => {
    expect(envVarFor('yespo/OVAGO')).toBe('ETL_CRED_YESPO_OVAGO');
    expect(envVarFor('yespo/brand_b')).toBe('ETL_CRED_YESPO_BRAND_B');
    expect(envVarFor('bigquery')).toBe('ETL_CRED_BIGQUERY');
  });

  it('asks the shared service first, with its bearer token, and caches the answer', async () => {
    const c = createCredentials({ serviceUrl: url, serviceToken: 'svc-token-abcdef', env: { ETL_CRED_YESPO_OVAGO: '{"apiKey":"from-env"}' } });
    expect(await c.resolve('yespo/OVAGO')).toEqual({ apiKey: 'from-service-key-123' });
    expect(await c.resolve('yespo/OVAGO')).toEqual({ apiKey: 'from-service-key-123' });
    expect(hits.filter((h) => h.path === '/credentials/yespo%2FOVAGO')).toEqual([{ path: '/credentials/yespo%2FOVAGO', auth: 'Bearer svc-token-abcdef' }]);
    // Every secret it hands out is scrubbed from text from then on.
    expect(redact('request failed with key from-service-key-123')).toBe('request failed with key [redacted]');
  });

  it('falls back to ETL_CRED_<NAME> when the service does not know the name or is down', async () => {
    const env = { ETL_CRED_CLICKHOUSE: '{"username":"etl","password":"pw-from-env-999"}' };
    expect(await createCredentials({ serviceUrl: url, env }).resolve('clickhouse')).toEqual({ username: 'etl', password: 'pw-from-env-999' });
    expect(await createCredentials({ serviceUrl: 'http://127.0.0.1:1', env }).resolve('clickhouse')).toMatchObject({ username: 'etl' });
    expect(await createCredentials({ env }).resolve('clickhouse')).toMatchObject({ username: 'etl' });
  });

  it('reads ETL_CRED_<NAME>_FILE (Docker/Kubernetes secrets) after the env var, registering only secret fields', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'etl-cred-'));
    const file = path.join(dir, 'clickhouse.json');
    writeFileSync(file, '{"username":"default","password":"pw-from-file-31337"}\n');
    expect(await createCredentials({ env: { ETL_CRED_CLICKHOUSE_FILE: file } }).resolve('clickhouse'))
      .toEqual({ username: 'default', password: 'pw-from-file-31337' });
    expect(redact('user default, password pw-from-file-31337')).toBe('user default, password [redacted]');
    // The env var wins over the file.
    expect(await createCredentials({ env: { ETL_CRED_CLICKHOUSE: '{"username":"env"}', ETL_CRED_CLICKHOUSE_FILE: file } }).resolve('clickhouse'))
      .toEqual({ username: 'env' });
    const missing = await createCredentials({ env: { ETL_CRED_CLICKHOUSE_FILE: path.join(dir, 'nope.json') } }).resolve('clickhouse').catch((e) => e);
    expect(missing).toBeInstanceOf(NonRetryableError);
    expect(missing.message).toBe('ETL_CRED_CLICKHOUSE_FILE names a file that cannot be read (ENOENT)');
    writeFileSync(file, 'not json secret-in-file-4242');
    const bad = await createCredentials({ env: { ETL_CRED_CLICKHOUSE_FILE: file } }).resolve('clickhouse').catch((e) => e);
    expect(bad.message).toBe('the file named by ETL_CRED_CLICKHOUSE_FILE is not a JSON object');
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails clearly, naming where it looked and never the value', async () => {
    const c = createCredentials({ env: { ETL_CRED_BIGQUERY: '{not json secret-value-777' } });
    const err = await c.resolve('bigquery').catch((e) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect(err.message).toBe('ETL_CRED_BIGQUERY is not a JSON object');
    const missing = await requireCredential(createCredentials({ env: {} }), 'yespo/brand_b').catch((e) => e);
    expect(missing).toBeInstanceOf(NonRetryableError);
    expect(missing.message).toMatch(/no credential named "yespo\/brand_b".*ETL_CRED_YESPO_BRAND_B.*ETL_CRED_YESPO_BRAND_B_FILE/);
    await expect(createCredentials({ serviceUrl: url, env: {} }).resolve('broken')).rejects.toThrow(/answered 500 for broken/);
  });
});
