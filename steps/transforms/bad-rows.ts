import { z } from 'zod';
import type { Database } from '../../db/client';
import { clearRejects, MAX_SAMPLES, MAX_VALUE_CHARS, recordRejects, type RejectSample } from '../../db/rejects';
import { NonRetryableError } from '../../lib/errors';

/**
 * The bad-rows policy (SPEC §10) and the tracker a validating step counts rejects with.
 *
 * `badRows: {max?, maxFraction?}`: a step may reject up to the larger of `max` rows and
 * `maxFraction` of the rows it read; default `{max: 0}`, the first bad row fails the step.
 * The legacy `skipBadRows: true` means `{maxFraction: 1}` (reject any number) when no
 * `badRows` is configured; `skipBadRows: false` is the default.
 *
 * When only `max` is set the step fails as soon as the count passes it (no need to read
 * on); with `maxFraction` the verdict waits for the last row. Either way the rejects are
 * recorded first, so the failed step shows its count and samples, and a resume with a
 * raised limit (it runs with the pipeline's current config) checks them again without
 * reading the source again.
 */
export const badRowsSchema = z.strictObject({
  max: z.number().int().min(0).optional(),
  maxFraction: z.number().min(0).max(1).optional(),
});
export type BadRowsPolicy = z.infer<typeof badRowsSchema>;

/** The config fields every validating pipeline accepts. */
export const badRowsConfigFields = {
  badRows: badRowsSchema.optional(),
  /** Deprecated: `true` = `badRows: {maxFraction: 1}`; ignored when `badRows` is set. */
  skipBadRows: z.boolean().optional(),
};

export function badRowsPolicy(config: { badRows?: BadRowsPolicy; skipBadRows?: boolean }): BadRowsPolicy {
  return config.badRows ?? (config.skipBadRows ? { maxFraction: 1 } : { max: 0 });
}

/** Rows the policy lets a step reject after reading `rows` rows. */
export function allowedRejects(policy: BadRowsPolicy, rows: number): number {
  return Math.max(policy.max ?? 0, Math.floor((policy.maxFraction ?? 0) * rows));
}

export interface Reject {
  dataset: string;
  row: number;
  page?: number;
  reason: string;
  path?: string;
  /** The rejected row as it came (text or value); stored redacted, cut to 2 KB. */
  value: unknown;
}

export interface RejectTracker {
  readonly total: number;
  readonly first: string | undefined;
  add(r: Reject): void;
  /** Sets the count to `n`, rows an earlier attempt rejected included (a continuation). */
  restore(n: number, firstReason: string | undefined): void;
  /** Drops stored samples the coming work will produce again (all, or from a page on). */
  clear(fromPage?: number): Promise<void>;
  /** Stores the total and the samples added since the last flush. */
  flush(): Promise<void>;
  /** Throws when the count is already over `max` and no fraction can raise the limit. */
  checkEarly(): void;
  /** Throws when the count is over what the policy allows for `rows` rows read. */
  check(rows: number): void;
}

export function createRejectTracker(a: {
  db: Database; runId: string; stepKey: string; policy: BadRowsPolicy;
  /** Rejects counted by earlier attempts (a page checkpoint). */
  total?: number; first?: string;
}): RejectTracker {
  let total = a.total ?? 0;
  let first = a.first;
  let pending: RejectSample[] = [];
  // Samples beyond this many are never stored: no need to keep building them.
  let room = MAX_SAMPLES;
  const fail = (allowed: number, rows?: number) => {
    const of = rows === undefined ? '' : ` of ${rows}`;
    throw new NonRetryableError(
      `${total} ${total === 1 ? 'row' : 'rows'} rejected${of}, over the limit of ${allowed} (badRows ${JSON.stringify(a.policy)}); ` +
      `first: ${first ?? '?'}`,
    );
  };
  return {
    get total() { return total; },
    get first() { return first; },
    add(r) {
      total++;
      first ??= r.reason;
      if (room <= 0) return;
      room--;
      pending.push({
        dataset: r.dataset, row: r.row, ...(r.page !== undefined ? { page: r.page } : {}), reason: r.reason,
        ...(r.path ? { path: r.path } : {}), value: valueText(r.value),
      });
    },
    restore(n, firstReason) {
      total = n;
      first ??= firstReason;
    },
    async clear(fromPage) {
      await clearRejects(a.db.pool, { runId: a.runId, stepKey: a.stepKey, fromPage });
    },
    async flush() {
      const samples = pending;
      pending = [];
      await recordRejects(a.db.pool, { runId: a.runId, stepKey: a.stepKey, total, samples });
    },
    checkEarly() {
      if (a.policy.maxFraction === undefined && total > (a.policy.max ?? 0)) fail(a.policy.max ?? 0);
    },
    check(rows) {
      const allowed = allowedRejects(a.policy, rows);
      if (total > allowed) fail(allowed, rows);
    },
  };
}

/** A sample's value as text, bounded before redaction sees it (redact cuts again). */
function valueText(v: unknown): string {
  let text: string;
  if (typeof v === 'string') text = v;
  else {
    try {
      text = JSON.stringify(v) ?? String(v);
    } catch {
      text = String(v);
    }
  }
  // Redaction needs a margin past the cut (a secret may straddle it): keep a generous one.
  return text.length > MAX_VALUE_CHARS + 16_384 ? text.slice(0, MAX_VALUE_CHARS + 16_384) : text;
}
