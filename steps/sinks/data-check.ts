import { NonRetryableError } from '../../lib/errors';

/**
 * The last line of defence before a sink publishes: a source that silently returns nothing
 * (expired credentials that yield an empty result, a truncated export, a wrong filter)
 * must not wipe a good dataset the marketing site reads. Refusals are non-retryable: the
 * same source would fail the same way, and an operator has to look (and can loosen the
 * policy in the pipeline's config when a shrink is genuine).
 */
export interface DataCheckPolicy {
  /** Publishing 0 rows is refused unless this is true. Default false. */
  allowEmpty?: boolean;
  /** Refuse when rows < this fraction of the last good run's rows. Default 0.5; 0 disables. */
  minFractionOfLast?: number;
}

export const DEFAULT_MIN_FRACTION_OF_LAST = 0.5;

const fmt = (n: number) => n.toLocaleString('en-US');

/** Returns when `rows` may be published; throws NonRetryableError (code `non_retryable`,
 *  details.check = 'row_count') with an operator-readable reason otherwise. `lastGoodRows`
 *  is the size of what is published now (null when nothing has been published yet). */
export function checkRowCount(rows: number, lastGoodRows: number | null, policy: DataCheckPolicy = {}): void {
  const allowEmpty = policy.allowEmpty ?? false;
  const minFraction = policy.minFractionOfLast ?? DEFAULT_MIN_FRACTION_OF_LAST;
  // A mistyped policy must not silently disable the check (or refuse everything).
  if (!(Number.isFinite(minFraction) && minFraction >= 0 && minFraction <= 1)) {
    throw new NonRetryableError(`data check: minFractionOfLast must be between 0 and 1, got ${minFraction}`);
  }
  const details = { check: 'row_count', rows, lastGoodRows, allowEmpty, minFractionOfLast: minFraction };
  if (rows === 0) {
    if (allowEmpty) return;
    throw new NonRetryableError('0 rows: refusing to publish an empty dataset (set allowEmpty to publish)', details);
  }
  if (minFraction === 0 || lastGoodRows === null || lastGoodRows <= 0) return;
  if (rows < lastGoodRows * minFraction) {
    const pct = `${+(minFraction * 100).toFixed(2)}%`;
    throw new NonRetryableError(
      `${fmt(rows)} rows is less than ${pct} of the last good run's ${fmt(lastGoodRows)} rows: refusing to publish ` +
        `(if the drop is genuine, lower minFractionOfLast, or set it to 0 to disable the check)`,
      details,
    );
  }
}
