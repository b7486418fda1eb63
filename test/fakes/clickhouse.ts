// Test helper: make sure a real ClickHouse answers on 127.0.0.1:8123 before a
// test file uses it. Integration tests run against the real server (Debian's
// 18.16 here, modern in production), not the sandbox fake, so SQL that only
// works on one of them is caught.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const CLICKHOUSE_TEST_URL = 'http://127.0.0.1:8123';
const SCRIPT = fileURLToPath(new URL('../../.ci/clickhouse.sh', import.meta.url));
/** apt-get install on a fresh machine plus server start; the script has its own 30 s ping deadline. */
const SCRIPT_TIMEOUT_MS = 240_000;

async function pingOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(2_000) });
    return res.ok && (await res.text()).trim() === 'Ok.';
  } catch {
    return false;
  }
}

let starting: Promise<string> | null = null;

/**
 * Returns the HTTP URL of a running ClickHouse, starting (and if needed
 * installing) it with .ci/clickhouse.sh when /ping does not answer. The
 * script is idempotent and takes a lock, so parallel test files are safe.
 */
export async function ensureClickHouse(): Promise<string> {
  if (await pingOk(CLICKHOUSE_TEST_URL)) return CLICKHOUSE_TEST_URL;
  // One start per process even if several suites in it ask at once.
  starting ??= runScript().finally(() => {
    starting = null;
  });
  return starting;
}

async function runScript(): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    execFile('bash', [SCRIPT], { timeout: SCRIPT_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`.ci/clickhouse.sh failed: ${err.message}\n${stderr}`));
      else resolve();
    });
  });
  if (!(await pingOk(CLICKHOUSE_TEST_URL))) {
    throw new Error(`ClickHouse still not answering on ${CLICKHOUSE_TEST_URL}/ping after .ci/clickhouse.sh`);
  }
  return CLICKHOUSE_TEST_URL;
}

/**
 * A database name unique to one test file run (tests run in parallel and a
 * crashed run may leave its database behind). Only [a-z0-9_], so it can be
 * interpolated into DDL: the old server has no query parameters.
 */
export function uniqueDatabaseName(label: string): string {
  const safe = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30);
  return `test_${safe}_${process.pid}_${randomBytes(4).toString('hex')}`;
}
