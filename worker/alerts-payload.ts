import { createHmac } from 'node:crypto';
import type { OutboxRow } from '../db/alerts';

/**
 * The webhook body of an alert (SPEC §12) and its signature. Pure: the body depends only
 * on the stored row and the public base URL, so every redelivery sends the same bytes.
 */
export interface AlertPayload {
  id: string;
  type: string;
  occurredAt: string;
  pipelineId: string | null;
  runId?: string;
  dataset?: string;
  summary: string;
  url?: string;
  /** One human-readable line, shown as is by chat webhooks. */
  text: string;
}

export function alertPayload(row: OutboxRow, publicUrl?: string): AlertPayload {
  const base = publicUrl?.replace(/\/+$/, '');
  const url = !base ? undefined
    : row.runId ? `${base}/etl/#/runs/${row.runId}`
    : row.type.startsWith('dataset.') ? `${base}/etl/#/datasets`
    : row.pipelineId ? `${base}/etl/#/pipelines/${encodeURIComponent(row.pipelineId)}`
    : `${base}/etl/#/alerts`;
  return {
    id: row.id,
    type: row.type,
    occurredAt: new Date(row.occurredAt).toISOString(),
    pipelineId: row.pipelineId,
    ...(row.runId ? { runId: row.runId } : {}),
    ...(row.dataset ? { dataset: row.dataset } : {}),
    summary: row.summary,
    ...(url ? { url } : {}),
    text: alertText(row, url),
  };
}

const ICON: Record<string, string> = {
  'run.failed': '🔴', 'run.recovered': '🟢', 'dataset.stale': '🟠', 'dataset.fresh': '🟢', 'schedule.overdue': '⏰', test: '🔔',
};

/** One line, never a newline in it (a multi-line error is folded). */
export function alertText(row: Pick<OutboxRow, 'type' | 'pipelineId' | 'runId' | 'dataset' | 'summary'>, url?: string): string {
  const what = {
    'run.failed': `ETL run of ${row.pipelineId} failed`,
    'run.recovered': `ETL pipeline ${row.pipelineId} recovered`,
    'dataset.stale': `Dataset ${row.dataset} (${row.pipelineId}) is stale`,
    'dataset.fresh': `Dataset ${row.dataset} (${row.pipelineId}) is fresh again`,
    'schedule.overdue': `Scheduled run of ${row.pipelineId} is overdue`,
    test: 'Test alert from the ETL platform',
  }[row.type] ?? `ETL ${row.type}`;
  const line = `${ICON[row.type] ?? ''} ${what}: ${row.summary}${url ? ` — ${url}` : ''}`.trim();
  return line.replace(/\s*[\r\n]+\s*/g, ' ').slice(0, 1_000);
}

/** `X-ETL-Signature`: hex HMAC-SHA256 of the raw body with ALERT_WEBHOOK_SECRET. */
export function signBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}
