import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Principal } from './context';

/**
 * One-time SSE tickets (SPEC §7): a client that cannot send headers on its event stream
 * (EventSource across origins, scripts behind some proxies) asks `POST /events/ticket`
 * and connects with `?ticket=`. A ticket is 32 random bytes, lives 60 s in Redis, and is
 * deleted by the first use (GETDEL), so one that lands in an access log is already spent.
 * A session's ticket keeps only the session id: the session is looked up again on use,
 * so a ticket never outlives the session it came from.
 */

export const TICKET_TTL_S = 60;
const TICKET = /^[A-Za-z0-9_-]{43}$/;
const key = (ticket: string) => `etl:sse-ticket:${ticket}`;

type Stored = { kind: 'token' } | { kind: 'session'; sessionId: string };

export async function issueTicket(redis: Redis, p: Principal): Promise<string> {
  const ticket = randomBytes(32).toString('base64url');
  const value: Stored = p.kind === 'token' ? { kind: 'token' } : { kind: 'session', sessionId: p.sessionId };
  await redis.set(key(ticket), JSON.stringify(value), 'EX', TICKET_TTL_S);
  return ticket;
}

/** What the ticket was issued to, or null when it is unknown, used or expired. */
export async function redeemTicket(redis: Redis, ticket: string): Promise<Stored | null> {
  if (!TICKET.test(ticket)) return null;
  const raw = await redis.getdel(key(ticket));
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw) as Stored;
    return v.kind === 'token' || (v.kind === 'session' && typeof v.sessionId === 'string') ? v : null;
  } catch {
    return null;
  }
}
