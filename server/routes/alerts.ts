import { z } from 'zod';
import { insertAlert, listAlerts } from '../../db/alerts';
import { recordAudit } from '../../db/audit';
import { ALERT_DELIVERY_STATES, ALERT_TYPES } from '../../db/schema';
import { withTransaction } from '../../db/tx';
import type { AppDeps } from '../context';
import { route, type RouteGroup } from '../route';
import * as s from '../schemas';

/** Alerts (SPEC §12): the recent alerts with their delivery state, and a test alert. */

const AlertsQuery = z.strictObject({
  limit: z.string().regex(/^\d{1,3}$/, 'limit must be an integer from 1 to 200')
    .transform(Number).pipe(z.number().int().min(1).max(200)).optional().describe('1..200, default 50'),
});

const Alert = z.object({
  id: z.string(), type: z.enum(ALERT_TYPES), occurredAt: z.string(), pipelineId: z.string().nullable(), runId: z.string().nullable(),
  dataset: z.string().nullable(), summary: z.string(),
  state: z.enum(ALERT_DELIVERY_STATES).describe('pending (being delivered or retried) | delivered | failed (given up) | skipped (no webhook)'),
  attempts: z.number(), lastError: z.string().nullable(), lastStatus: z.number().nullable(),
  nextAttemptAt: z.string().nullable().describe('while pending: when the next attempt is due'), deliveredAt: z.string().nullable(),
});
const AlertList = z.object({
  webhookConfigured: z.boolean().describe('whether this api process has ALERT_WEBHOOK_URL (the workers send)'),
  alerts: z.array(Alert),
});

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

export function alertRoutes(deps: AppDeps): RouteGroup {
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/alerts', tag: 'alerts', summary: 'Recent alerts, newest first, with their delivery state',
        query: AlertsQuery,
        responses: { 200: { description: 'alerts', schema: AlertList }, 400: { description: 'invalid query', schema: s.ErrorResponse } },
        handler: async (c, { query }) => {
          const rows = await listAlerts(deps.db.pool, query.limit ?? 50);
          return c.json({
            webhookConfigured: deps.config.alertWebhookConfigured ?? false,
            alerts: rows.map((r) => ({
              id: r.id, type: r.type, occurredAt: iso(r.occurredAt), pipelineId: r.pipelineId, runId: r.runId, dataset: r.dataset,
              summary: r.summary, state: r.state, attempts: r.attempts, lastError: r.lastError, lastStatus: r.lastStatus,
              nextAttemptAt: iso(r.nextAttemptAt), deliveredAt: iso(r.deliveredAt),
            })),
          });
        },
      }),
      route({
        method: 'POST', path: '/alerts/test', tag: 'alerts', summary: 'Queue a test alert to the webhook', operator: true,
        responses: { 202: { description: 'the test alert was queued', schema: z.object({ id: z.string() }) } },
        handler: async (c) => {
          const actor = c.get('principal').actor;
          // The alert and its audit entry commit together.
          const id = await withTransaction(deps.db.pool, async (tx) => {
            const alertId = await insertAlert(tx, {
              type: 'test', summary: `sent by ${actor.name ?? actor.id ?? actor.kind} from the /etl page or API`, details: { actor: actor.kind },
            });
            await recordAudit(tx, [{ actor, action: 'alerts.test', details: { alertId } }]);
            return alertId;
          });
          return c.json({ id }, 202);
        },
      }),
    ],
  };
}
