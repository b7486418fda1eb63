import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Actor } from '../db/schema';

/**
 * SP0 sessions (SPEC §7): the cookie value, possibly signed the way Express and Fastify
 * sign cookies, names the Redis key `mc:sess:<id>`; the JSON stored there says who the
 * user is, which roles they hold and when the session ends. Pure functions: auth.ts does
 * the I/O. Nothing here ever returns or logs the cookie value or the session JSON.
 */

const SESSION_ID = /^[A-Za-z0-9_-]{8,128}$/;

export type CookieId = { ok: true; id: string } | { ok: false };

/**
 * The session id of a cookie value. With a secret, `<id>.<sig>` (Fastify) and
 * `s:<id>.<sig>` (Express, usually URL-encoded) are verified: `sig` is the HMAC-SHA256 of
 * `<id>` in base64 without `=` padding. A value that carries a signature which does not
 * verify is refused, as is any signed value when no secret is configured. A plain id
 * (no signature) is accepted as before: it is as unguessable as a signed one.
 */
export function sessionIdFromCookie(raw: string, secret: string | undefined): CookieId {
  let value = raw;
  if (value.includes('%')) {
    try {
      value = decodeURIComponent(value);
    } catch {
      return { ok: false };
    }
  }
  const prefixed = value.startsWith('s:');
  if (prefixed) value = value.slice(2);
  const dot = value.lastIndexOf('.');
  if (dot < 0) return !prefixed && SESSION_ID.test(value) ? { ok: true, id: value } : { ok: false };
  const id = value.slice(0, dot);
  const sig = value.slice(dot + 1);
  if (!secret || !SESSION_ID.test(id) || !/^[A-Za-z0-9+/]{43}$/.test(sig)) return { ok: false };
  const expected = createHmac('sha256', secret).update(id).digest('base64').replace(/=+$/, '');
  const a = Buffer.from(sig);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b) ? { ok: true, id } : { ok: false };
}

/** Signs an id as SP0 does (tests, and a reference for the format). */
export function signSessionId(id: string, secret: string, style: 'fastify' | 'express' = 'fastify'): string {
  const signed = `${id}.${createHmac('sha256', secret).update(id).digest('base64').replace(/=+$/, '')}`;
  return style === 'express' ? encodeURIComponent(`s:${signed}`) : signed;
}

export interface SessionInfo {
  actor: Actor;
  roles: string[];
  /** Epoch ms when the session ends, when it says so. */
  expiresAt: number | null;
}

const MAX_FIELD = 200;
const str = (v: unknown): string | undefined =>
  typeof v === 'string' && v !== '' ? v.slice(0, MAX_FIELD) : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined;

/** ISO time or epoch ms; `undefined` when absent, NaN when present but unreadable. */
function timeOf(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? v : NaN;
  if (typeof v === 'string') return /^\d{1,15}$/.test(v) ? Number(v) : Date.parse(v);
  return NaN;
}

/**
 * Reads a session's JSON. Null (401) when it has no user object, or when it has expired
 * or its expiry cannot be read: a session that might be over is treated as over.
 */
export function parseSession(raw: string, now = Date.now()): SessionInfo | null {
  if (raw.length > 64 * 1024) return null;
  let session: unknown;
  try {
    session = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!session || typeof session !== 'object' || Array.isArray(session)) return null;
  const s = session as Record<string, unknown>;
  const user = s.user;
  if (!user || typeof user !== 'object' || Array.isArray(user)) return null;
  const u = user as Record<string, unknown>;
  const cookie = s.cookie && typeof s.cookie === 'object' ? (s.cookie as Record<string, unknown>) : {};
  let expiresAt: number | null = null;
  for (const v of [s.expiresAt, s.expires, cookie.expires]) {
    const t = timeOf(v);
    if (t === undefined) continue;
    if (Number.isNaN(t) || t <= now) return null;
    expiresAt = expiresAt === null ? t : Math.min(expiresAt, t);
  }
  const roles = [
    ...(typeof u.role === 'string' ? [u.role] : []),
    ...(Array.isArray(u.roles) ? u.roles.filter((r): r is string => typeof r === 'string') : []),
  ].slice(0, 50).map((r) => r.slice(0, 100));
  const actor: Actor = { kind: 'session' };
  const id = str(u.id);
  const name = str(u.name) ?? str(u.email);
  if (id !== undefined) actor.id = id;
  if (name !== undefined) actor.name = name;
  return { actor, roles, expiresAt };
}

export const hasOperatorRole = (roles: readonly string[], operatorRoles: readonly string[]) =>
  roles.some((r) => operatorRoles.includes(r));
