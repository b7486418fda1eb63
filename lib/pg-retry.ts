import pRetry from 'p-retry';

/** SQLSTATE classes that mean "your statement is wrong", not "the database is away". */
const PERMANENT = /^(22|23|42|2B|2D|3D|3F|44)/;

export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.length === 5 && PERMANENT.test(code)) return false;
  return true;
}

/**
 * Retries a state write through a Postgres outage (~30 s of backoff in all), so a step
 * that finishes while the database restarts still records its result.
 */
export async function withDbRetry<T>(fn: () => Promise<T>, opts: { retries?: number; signal?: AbortSignal } = {}): Promise<T> {
  // Fast path: the first try costs nothing extra; the retry machinery only on failure.
  try {
    return await fn();
  } catch (err) {
    if (!isTransientDbError(err) || opts.retries === 0) throw err;
  }
  return pRetry(fn, {
    retries: opts.retries ?? 10,
    minTimeout: 200,
    maxTimeout: 5_000,
    factor: 2,
    randomize: true,
    signal: opts.signal,
    shouldRetry: (err) => isTransientDbError(err),
  });
}
