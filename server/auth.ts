import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import type { Redis } from 'ioredis';
import type { AppEnv, Principal } from './context';
import { HttpError } from './errors';
import { hasOperatorRole, parseSession, sessionIdFromCookie } from './session';
import { redeemTicket } from './tickets';

/**
 * SPEC §7. An /api/etl request carries either the API token (`Authorization: Bearer`) or
 * the SP0 session cookie, whose id (after its signature is checked, when SESSION_SECRET is
 * set) names the Redis key `mc:sess:<id>`. The event stream also takes a one-time
 * `?ticket=`; the API token is never accepted in a URL. Neither credential is ever logged,
 * echoed or kept beyond the request: the context only learns who the caller is and
 * whether it may change state.
 */

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
  sessionSecret?: string;
  operatorRoles?: readonly string[];
  /** Paths (exact) where a GET may carry a one-time `?ticket=` (the event stream). */
  ticketPaths?: readonly string[];
  sessionLookupTimeoutMs?: number;
}

export const tokenPrincipal = (): Principal => ({ kind: 'token', operator: true, actor: { kind: 'token', name: 'api token' } });

export function authenticate(o: AuthOptions): MiddlewareHandler<AppEnv> {
  const ticketPaths = new Set(o.ticketPaths ?? []);
  const sessions = sessionLoader(o);
  return async function authenticate(c, next) {
    c.set('principal', await identify());
    await next();

    async function identify(): Promise<Principal> {
      const header = c.req.header('authorization');
      // Presented credentials that fail are refused outright, not downgraded to the cookie.
      if (header !== undefined) {
        const m = BEARER.exec(header);
        if (m && tokenMatches(m[1], o.apiToken)) return tokenPrincipal();
        throw unauthorized();
      }
      if (c.req.method === 'GET' && ticketPaths.has(c.req.path)) {
        const ticket = c.req.query('ticket');
        if (ticket !== undefined) {
          const held = await redeemTicket(o.redis, ticket).catch(() => {
            throw new HttpError(503, 'session_store_unavailable', 'sessions cannot be checked right now');
          });
          if (held?.kind === 'token') return tokenPrincipal();
          const p = held ? await sessions(held.sessionId) : null;
          if (p) return p;
          throw unauthorized();
        }
      }
      const raw = getCookie(c, o.sessionCookie);
      if (raw !== undefined) {
        const sid = sessionIdFromCookie(raw, o.sessionSecret);
        if (!sid.ok) throw unauthorized();
        const session = await sessions(sid.id);
        if (session) return session;
      }
      throw unauthorized();
    }
  };
}

/** Loads a session principal by id: null when it is missing, malformed or expired. */
export type SessionLoader = (sessionId: string) => Promise<Principal | null>;

export function sessionLoader(o: Pick<AuthOptions, 'redis' | 'operatorRoles' | 'sessionLookupTimeoutMs'>): SessionLoader {
  const operatorRoles = o.operatorRoles ?? ['admin'];
  const timeoutMs = o.sessionLookupTimeoutMs ?? 2_000;
  return async (sessionId) => {
    const raw = await readSession(o.redis, sessionId, timeoutMs);
    const info = raw === null ? null : parseSession(raw);
    if (!info) return null;
    return { kind: 'session', sessionId, actor: info.actor, expiresAt: info.expiresAt, operator: hasOperatorRole(info.roles, operatorRoles) };
  };
}

async function readSession(redis: Redis, sid: string, timeoutMs: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpError(503, 'session_store_unavailable', 'sessions cannot be checked right now')), timeoutMs);
  });
  try {
    return await Promise.race([redis.get(`mc:sess:${sid}`), timeout]);
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(503, 'session_store_unavailable', 'sessions cannot be checked right now');
  } finally {
    clearTimeout(timer);
  }
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
