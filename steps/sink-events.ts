import { NonRetryableError } from '../lib/errors';
import type { StepContext } from './define';

/** The sinks' entries in a step's event log (SPEC §14): data check outcomes and publishes. */

/** Runs a sink call; a refusal by the data check is logged as a failed `check` event. */
export function checked<T>(ctx: Pick<StepContext, 'event'>, dataset: string, fn: () => T): T {
  const onError = (err: unknown) => {
    const d = err instanceof NonRetryableError ? (err.details as { check?: string } | undefined) : undefined;
    if (d?.check) ctx.event('check', `${dataset}: data check refused to publish: ${(err as Error).message}`, { dataset, passed: false, ...d });
    throw err;
  };
  try {
    const r = fn();
    return r instanceof Promise ? (r.catch(onError) as T) : r;
  } catch (err) {
    return onError(err);
  }
}

export function passed(ctx: Pick<StepContext, 'event'>, dataset: string, rows: number, lastGoodRows: number | null): void {
  ctx.event('check', `${dataset}: data check passed (${rows} rows; last good run ${lastGoodRows ?? 'none'})`, { dataset, passed: true, rows, lastGoodRows });
}

export function publishedEvent(ctx: Pick<StepContext, 'event'>, key: string, rows: number): void {
  ctx.event('published', `${key}: ${rows} rows published`, { keys: [key, `${key}:meta`], rows });
}
