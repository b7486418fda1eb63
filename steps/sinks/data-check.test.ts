import { describe, expect, it } from 'vitest';
import { NonRetryableError } from '../../lib/errors';
import { checkRowCount } from './data-check';

const refusal = (fn: () => void): NonRetryableError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NonRetryableError);
    return err as NonRetryableError;
  }
  throw new Error('expected a refusal');
};

describe('checkRowCount', () => {
  it('refuses 0 rows by default, with or without a previous run', () => {
    expect(refusal(() => checkRowCount(0, null)).message).toBe('0 rows: refusing to publish an empty dataset (set allowEmpty to publish)');
    expect(refusal(() => checkRowCount(0, 10)).details).toMatchObject({ check: 'row_count', rows: 0, lastGoodRows: 10 });
  });

  it('allows 0 rows with allowEmpty, even after a large run', () => {
    expect(() => checkRowCount(0, 9_999, { allowEmpty: true })).not.toThrow();
  });

  it('refuses a drop below 50% of the last good run by default', () => {
    const err = refusal(() => checkRowCount(1_234, 9_999));
    expect(err.message).toMatch(/^1,234 rows is less than 50% of the last good run's 9,999 rows: refusing to publish/);
    expect(() => checkRowCount(5_000, 9_999)).not.toThrow();
    expect(() => checkRowCount(4_999, 9_998)).not.toThrow(); // exactly half
  });

  it('honours a custom fraction and 0 as disabled', () => {
    expect(refusal(() => checkRowCount(89, 100, { minFractionOfLast: 0.9 })).message).toMatch(/less than 90% of/);
    expect(() => checkRowCount(1, 1_000_000, { minFractionOfLast: 0 })).not.toThrow();
  });

  it('has no baseline on the first run (or after an empty one)', () => {
    expect(() => checkRowCount(1, null)).not.toThrow();
    expect(() => checkRowCount(1, 0)).not.toThrow();
  });

  it('rejects a nonsensical policy instead of silently ignoring it', () => {
    expect(refusal(() => checkRowCount(10, 10, { minFractionOfLast: 50 })).message).toMatch(/between 0 and 1/);
    expect(refusal(() => checkRowCount(10, 10, { minFractionOfLast: Number.NaN })).message).toMatch(/between 0 and 1/);
  });
});
