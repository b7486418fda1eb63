import { readFile } from 'node:fs/promises';
import { registerSecrets } from '../lib/redact';
import { NonRetryableError } from '../lib/errors';

/**
 * Credentials by name (`bigquery`, `clickhouse`, `yespo/OVAGO`, …): first the shared
 * credential service, else the env var ETL_CRED_<NAME> holding JSON, else the file named by
 * ETL_CRED_<NAME>_FILE. Cached for a short
 * TTL. Every secret value is registered with the redactor the moment it is read, and an
 * error never includes a value, only the name and where it was looked for.
 */
export type Credential = Record<string, unknown>;

export const envVarFor = (name: string) => `ETL_CRED_${name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`;

export interface CredentialSource {
  /** The credential, or null when it is configured nowhere. */
  resolve(name: string): Promise<Credential | null>;
}

export function createCredentials(opts: {
  serviceUrl?: string;
  serviceToken?: string;
  env: Record<string, string | undefined>;
  ttlMs?: number;
  fetch?: typeof fetch;
}): CredentialSource {
  const cache = new Map<string, { value: Credential | null; at: number }>();
  const ttl = opts.ttlMs ?? 60_000;
  const doFetch = opts.fetch ?? fetch;

  async function fromService(name: string): Promise<Credential | null> {
    if (!opts.serviceUrl) return null;
    const url = `${opts.serviceUrl.replace(/\/$/, '')}/credentials/${encodeURIComponent(name)}`;
    let res: Response;
    try {
      res = await doFetch(url, {
        headers: opts.serviceToken ? { authorization: `Bearer ${opts.serviceToken}` } : {},
        signal: AbortSignal.timeout(5_000),
      });
    } catch {
      // The service is down: fall back to env, as the contract says.
      return null;
    }
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`credential service answered ${res.status} for ${name}`);
    const body = (await res.json().catch(() => null)) as unknown;
    if (!body || typeof body !== 'object') throw new NonRetryableError(`credential service returned no JSON object for ${name}`);
    return body as Credential;
  }

  function parseJsonObject(v: string, where: string): Credential {
    try {
      const parsed = JSON.parse(v) as unknown;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      return parsed as Credential;
    } catch {
      throw new NonRetryableError(`${where} is not a JSON object`);
    }
  }

  function fromEnv(name: string): Credential | null {
    const v = opts.env[envVarFor(name)];
    return v ? parseJsonObject(v, envVarFor(name)) : null;
  }

  /** ETL_CRED_<NAME>_FILE: a file holding the JSON (Docker/Kubernetes secrets). */
  async function fromFile(name: string): Promise<Credential | null> {
    const fileVar = `${envVarFor(name)}_FILE`;
    const file = opts.env[fileVar];
    if (!file) return null;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new NonRetryableError(`${fileVar} names a file that cannot be read (${code})`);
    }
    return parseJsonObject(text, `the file named by ${fileVar}`);
  }

  return {
    async resolve(name) {
      const hit = cache.get(name);
      if (hit && Date.now() - hit.at < ttl) return hit.value;
      const value = (await fromService(name)) ?? fromEnv(name) ?? (await fromFile(name));
      if (value) registerSecrets(value);
      cache.set(name, { value, at: Date.now() });
      return value;
    },
  };
}

/** For step code: the credential or a clear, secret-free, non-retryable error. */
export async function requireCredential(source: CredentialSource, name: string): Promise<Credential> {
  const c = await source.resolve(name);
  if (!c) {
    throw new NonRetryableError(
      `no credential named "${name}": configure it in the credential service, set ${envVarFor(name)} to its JSON, or ${envVarFor(name)}_FILE to a file holding it`);
  }
  return c;
}
