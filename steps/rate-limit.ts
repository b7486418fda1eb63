import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { abortReason } from '../lib/abort';

/**
 * A request-rate limit shared by every run in every worker process that uses one API key:
 * GCRA (generic cell rate algorithm) kept in one Redis key. Redis's own clock (TIME) is the
 * only clock consulted, so worker hosts with skewed clocks still agree.
 *
 * Each acquire *reserves* the next free slot in one round trip and sleeps until it; waiters
 * are therefore served roughly first come, first served across processes, and Redis is not
 * polled while waiting. A reservation abandoned by an aborted waiter is not handed back:
 * that only ever slows callers down, never lets them exceed the rate.
 *
 * Guarantee: in any window of one second at most `ratePerSec + burst` permits are granted
 * (burst 0 = strictly evenly spaced requests).
 */
export interface RateLimiter {
  acquire(signal?: AbortSignal): Promise<void>;
}

// Times are in microseconds: ~1.7e15 now, well inside a double's exact integer range.
// SET is given a formatted integer because Lua's default number-to-string keeps only 14
// significant digits, which would round the stored time to 100 µs steps.
const GCRA = `
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local nextTat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', nextTat), 'PX', math.ceil((nextTat - now) / 1000) + 1000)
return wait
`;
const GCRA_SHA = createHash('sha1').update(GCRA).digest('hex');

export function createRateLimiter(redis: Redis, opts: { key: string; ratePerSec: number; burst?: number }): RateLimiter {
  if (!(opts.ratePerSec > 0) || !Number.isFinite(opts.ratePerSec)) throw new Error(`ratePerSec must be > 0, got ${opts.ratePerSec}`);
  const burst = opts.burst ?? 0;
  if (!(Number.isInteger(burst) && burst >= 0)) throw new Error(`burst must be an integer >= 0, got ${burst}`);
  const interval = Math.max(1, Math.round(1_000_000 / opts.ratePerSec));
  const args = [String(interval), String(interval * burst)];

  async function reserve(): Promise<number> {
    try {
      return Number(await redis.evalsha(GCRA_SHA, 1, opts.key, ...args));
    } catch (err) {
      // First use on this Redis (or after SCRIPT FLUSH / a restart): load it by sending it.
      if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
      return Number(await redis.eval(GCRA, 1, opts.key, ...args));
    }
  }

  return {
    async acquire(signal) {
      signal?.throwIfAborted();
      const waitUs = await untilAborted(reserve(), signal);
      if (waitUs > 0) await sleep(waitUs / 1000, signal);
    },
  };
}

/** The Redis key for an API key's limiter: a hash, so the key itself never reaches Redis. */
export function rateLimitKey(service: string, apiKey: string): string {
  return `etl:ratelimit:${service}:${createHash('sha256').update(apiKey).digest('hex').slice(0, 16)}`;
}

/** Sleeps `ms`, rejecting with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const done = () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const t = setTimeout(done, ms);
    function onAbort() {
      clearTimeout(t);
      reject(abortReason(signal!));
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A Redis call that hangs (Redis away, commands queued) must not outlive a cancelled step. */
function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
