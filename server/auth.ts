import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import type { Redis } from 'ioredis';
import type { AppEnv, Principal } from './context';
import { HttpError } from './errors';

/**
 * SPEC §7. An /api/etl request carries either the API token (`Authorization: Bearer`, or
 * `?token=` on the SSE route, because EventSource cannot send headers) or the SP0 session
 * cookie, whose id names the Redis key `mc:sess:<id>`. Neither credential is ever logged,
 * echoed or kept beyond the request: the context only learns who the caller is.
 */

const SESSION_ID = /^[A-Za-z0-9_-]{8,128}$/;
const BEARER = /^Bearer[ \t]+([^\s]{1,512})[ \t]*$/i;

/** Constant-time comparison; hashing first makes the lengths equal without leaking them. */
export function tokenMatches(given: string, expected: string | undefined): boolean {
  if (!expected) return false;
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

const unauthorized = () => new HttpError(401, 'unauthorized', 'authentication required');

export interface AuthOptions {
  redis: Redis;
  apiToken?: string;
  sessionCookie: string;
  /** Paths (exact) where a GET may pass the token as `?token=`. */
  queryTokenPaths?: readonly string[];
  sessionLookupTimeoutMs?: number;
}

export function authenticate(o: AuthOptions): MiddlewareHandler<AppEnv> {
  const queryTokenPaths = new Set(o.queryTokenPaths ?? []);
  return async function authenticate(c, next) {
    c.set('principal', await identify());
    await next();

    async function identify(): Promise<Principal> {
      const header = c.req.header('authorization');
      // Presented credentials that fail are refused outright, not downgraded to the cookie.
      if (header !== undefined) {
        const m = BEARER.exec(header);
        if (m && tokenMatches(m[1]!, o.apiToken)) return { kind: 'token' };
        throw unauthorized();
      }
      if (c.req.method === 'GET' && queryTokenPaths.has(c.req.path)) {
        const token = c.req.query('token');
        if (token !== undefined) {
          if (tokenMatches(token, o.apiToken)) return { kind: 'token' };
          throw unauthorized();
        }
      }
      const sid = getCookie(c, o.sessionCookie);
      if (sid !== undefined) {
        const session = await lookupSession(o.redis, sid, o.sessionLookupTimeoutMs ?? 2_000);
        if (session) return session;
      }
      throw unauthorized();
    }
  };
}

async function lookupSession(redis: Redis, sid: string, timeoutMs: number): Promise<Principal | null> {
  // The id becomes part of a Redis key: only a plain token may get that far.
  if (!SESSION_ID.test(sid)) return null;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpError(503, 'session_store_unavailable', 'sessions cannot be checked right now')), timeoutMs);
  });
  let raw: string | null;
  try {
    raw = await Promise.race([redis.get(`mc:sess:${sid}`), timeout]);
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(503, 'session_store_unavailable', 'sessions cannot be checked right now');
  } finally {
    clearTimeout(timer);
  }
  if (raw === null || raw.length > 64 * 1024) return null;
  let session: unknown;
  try {
    session = JSON.parse(raw);
  } catch {
    return null;
  }
  const user = (session as { user?: unknown } | null)?.user;
  if (!user || typeof user !== 'object' || Array.isArray(user)) return null;
  const id = (user as { id?: unknown }).id;
  return { kind: 'session', userId: typeof id === 'string' || typeof id === 'number' ? String(id).slice(0, 100) : null };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function originOf(value: string | undefined): string | null {
  if (!value || value === 'null') return null;
  try {
    const u = new URL(value);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

/**
 * CSRF defence for cookie-authenticated mutations: the browser's Origin (or Referer) must
 * be this site or an allowed origin. Token requests skip it: a cross-site page cannot
 * attach the token. The host is compared without the scheme because TLS usually ends at
 * the proxy; X-Forwarded-Host is trusted because a cross-site page cannot set it without
 * a CORS preflight, which this API never grants.
 */
export function originCheck(o: { allowedOrigins?: readonly string[] }): MiddlewareHandler<AppEnv> {
  const allowed = new Set((o.allowedOrigins ?? []).map((x) => originOf(x)).filter((x): x is string => x !== null));
  return async function originCheck(c, next) {
    if (SAFE_METHODS.has(c.req.method) || c.get('principal').kind !== 'session') return next();
    const origin = originOf(c.req.header('origin')) ?? originOf(c.req.header('referer'));
    if (!origin) throw new HttpError(403, 'csrf', 'a browser request must carry an Origin or Referer header');
    const own = [c.req.header('host'), c.req.header('x-forwarded-host')?.split(',')[0]?.trim(), new URL(c.req.url).host]
      .filter((h): h is string => !!h)
      .map((h) => h.toLowerCase());
    if (!allowed.has(origin) && !own.includes(new URL(origin).host)) {
      throw new HttpError(403, 'csrf', 'cross-site request refused');
    }
    return next();
  };
}
