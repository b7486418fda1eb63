import * as alerts from '../db/alerts';
import type { Database } from '../db/client';
import type { Logger } from '../lib/logger';
import { redact } from '../lib/redact';
import { alertPayload, signBody } from './alerts-payload';

/**
 * Delivers the alert outbox to ALERT_WEBHOOK_URL (SPEC §12). Every replica runs one; a
 * claim (FOR UPDATE SKIP LOCKED + a lease longer than the request timeout) makes each
 * attempt one replica's. An attempt whose sender dies mid-request is taken over when its
 * lease runs out, with the same id (`X-ETL-Event-Id`), so the receiver can drop a repeat.
 * Sending runs on its own timer and connection pool slot: it never holds a run back.
 */
export interface AlertSenderOptions {
  db: Database;
  log: Logger;
  workerId: string;
  webhookUrl?: string;
  secret?: string;
  publicUrl?: string;
  pollMs?: number;
  /** First retry after this, doubling, with jitter, capped at `backoffMaxMs` (≤ 60 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  timeoutMs?: number;
  leaseMs?: number;
  /** Retried this long after the event, then marked failed. */
  retryForMs?: number;
  fetch?: typeof fetch;
}

export function retryDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(Math.min(maxMs, exp * (0.75 + random() * 0.25)));
}

export function createAlertSender(o: AlertSenderOptions) {
  const doFetch = o.fetch ?? fetch;
  const timeoutMs = o.timeoutMs ?? 10_000;
  // The lease must outlive a request, or a slow receiver would get the event twice at once.
  const leaseMs = Math.max(o.leaseMs ?? 30_000, timeoutMs + 2_000);
  const base = o.backoffBaseMs ?? 2_000;
  const max = Math.min(o.backoffMaxMs ?? 60_000, 60_000);
  const retryFor = o.retryForMs ?? 24 * 3_600_000;

  async function deliver(row: alerts.OutboxRow): Promise<void> {
    const body = JSON.stringify(alertPayload(row, o.publicUrl));
    const headers: Record<string, string> = {
      'content-type': 'application/json', 'user-agent': 'marketing-etl-alerts', 'x-etl-event-id': row.id,
    };
    if (o.secret) headers['x-etl-signature'] = signBody(body, o.secret);
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await doFetch(o.webhookUrl!, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
      if (status < 200 || status > 299) error = `HTTP ${status}`;
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      error = e.name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : `${e.cause?.code ?? e.name}: ${e.message}`;
    }
    const delivered = error === null;
    const giveUp = !delivered && Date.now() - new Date(row.occurredAt).getTime() > retryFor;
    const ok = await alerts.recordAttempt(o.db.pool, {
      id: row.id, worker: o.workerId, attempt: row.attempts, delivered, status,
      error: error && redact(error, { max: 500 }), retryInMs: delivered || giveUp ? null : retryDelay(row.attempts, base, max),
    });
    const log = { alertId: row.id, type: row.type, attempt: row.attempts, status };
    if (!ok) o.log.warn(log, 'alert attempt finished after its lease ran out; another sender owns it now');
    else if (delivered) o.log.info(log, 'alert delivered');
    else o.log.warn({ ...log, error, giveUp }, giveUp ? 'alert undeliverable; giving up' : 'alert delivery failed; will retry');
  }

  /** One pass: claim what is due and send it (in parallel, a batch at a time). */
  async function pass(): Promise<number> {
    if (!o.webhookUrl) return alerts.skipPendingAlerts(o.db.pool);
    const due = await alerts.claimDueAlerts(o.db.pool, { worker: o.workerId, leaseMs, limit: 20 });
    await Promise.all(due.map((row) => deliver(row).catch((err: unknown) => o.log.warn({ alertId: row.id, err: String(err) }, 'could not record an alert attempt'))));
    return due.length;
  }

  return { pass };
}

export function startAlertSender(o: AlertSenderOptions): { stop(): Promise<void> } {
  const sender = createAlertSender(o);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const loop = () => {
    if (stopped) return;
    running = sender.pass().then(
      (n) => n,
      (err: unknown) => {
        o.log.warn({ err: String(err) }, 'alert sender pass failed; retrying');
        return 0;
      },
    ).then((n) => {
      // A full batch: there may be more due right now.
      if (!stopped) timer = setTimeout(loop, n >= 20 ? 0 : o.pollMs ?? 1_000);
    });
  };
  loop();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
