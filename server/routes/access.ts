import { decodeAuditCursor, listAudit } from '../../db/audit';
import type { AppDeps } from '../context';
import { route, type RouteGroup } from '../route';
import * as s from '../schemas';
import { issueTicket, TICKET_TTL_S } from '../tickets';

/** Who am I, the audit trail, and one-time tickets for the event stream (SPEC §7). */

export function accessRoutes(deps: AppDeps): RouteGroup {
  const operatorRoles = deps.config.operatorRoles ?? ['admin'];
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/me', tag: 'meta', summary: 'The caller: who the audit trail records, and whether it may change state',
        responses: { 200: { description: 'the caller', schema: s.Me } },
        handler: (c) => {
          const p = c.get('principal');
          return c.json({ actor: p.actor, operator: p.operator, operatorRoles });
        },
      }),
      route({
        method: 'GET', path: '/audit', tag: 'audit', summary: 'The audit trail: every state change, newest first (keyset pages)',
        query: s.AuditQuery,
        responses: { 200: { description: 'one page of audit entries', schema: s.AuditPage } },
        handler: async (c, { query }) => c.json(await listAudit(deps.db.pool, {
          limit: query.limit ?? 50, beforeId: query.cursor ? decodeAuditCursor(query.cursor)! : undefined,
        })),
      }),
      route({
        method: 'POST', path: '/events/ticket', tag: 'events',
        summary: 'A one-time ticket (valid 60 s) to open the event stream with ?ticket= where no cookie or header can be sent',
        body: s.NoBody,
        responses: { 201: { description: 'the ticket', schema: s.Ticket } },
        handler: async (c) => c.json({ ticket: await issueTicket(deps.redis, c.get('principal')), expiresInSeconds: TICKET_TTL_S }, 201),
      }),
    ],
  };
}
