import { describe, expect, it } from 'vitest';
import { fireTimesBetween, nextFireTime, nextFireTimes, validateCron, validateSchedule, validateTimezone } from './cron';

const iso = (ds: Date[]) => ds.map((d) => d.toISOString());
const KYIV = 'Europe/Kyiv';

describe('validateSchedule', () => {
  it.each([
    ['*/30 * * * *'], ['0 3 * * *'], ['15 * * * 1-5'], ['0 0 L * *'], ['0 9 * * MON,THU'], ['0 0 * * 1#2'],
  ])('accepts %s', (cron) => {
    expect(validateSchedule(cron, KYIV)).toBeNull();
  });

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['* * * *', 'expected 5 fields'],
    ['* * * * * * *', 'expected 5 fields'],
    // SPEC §7: minute resolution; a seconds field ran a pipeline every second.
    ['* * * * * *', 'a seconds field is not supported'],
    ['*/10 * * * * *', 'a seconds field is not supported'],
    ['61 * * * *', 'invalid cron'],
    ['*/0 * * * *', 'invalid cron'],
    ['5-1 * * * *', 'invalid cron'],
    ['0 0 30 2 *', 'invalid cron'],
    ['a b c d e', 'invalid cron'],
    ['@daily', 'expected 5 fields'],
    ['H * * * *', 'randomised'],
    ['H/5 * * * *', 'randomised'],
    ["0 0 * * ';--", 'characters'],
    ["'; drop table etl_runs;-- * * *", 'expected 5 fields'],
    ['0 0 * * *\u0000', 'characters'],
    ['<script> * * * *', 'characters'],
    ['1,'.repeat(100) + ' * * * *', 'longer than'],
  ])('rejects %j', (cron, msg) => {
    expect(validateCron(cron)).toContain(msg);
    expect(validateSchedule(cron, 'UTC')).toContain(msg);
  });

  it('takes a seconds field only when the caller opts in (the scheduler\'s own tests)', () => {
    expect(validateSchedule('*/10 * * * * *', KYIV, { allowSeconds: true })).toBeNull();
  });

  it.each([['Europe/Kyiv'], ['Europe/Kiev'], ['UTC'], ['Etc/GMT+5'], ['America/Argentina/Buenos_Aires']])('accepts zone %s', (tz) => {
    expect(validateTimezone(tz)).toBeNull();
  });

  it.each([
    [''], ['Mars/Olympus'], ['+01:00'], ['../../etc/passwd'], ['Europe/Kyiv\u0000'], ['Europe/Kyiv '], ['x'.repeat(200)], ['<script>'], ['Europe/Київ'],
  ])('rejects zone %j', (tz) => {
    expect(validateTimezone(tz)).not.toBeNull();
    expect(validateSchedule('0 * * * *', tz)).not.toBeNull();
  });
});

describe('fire times across DST changes (Europe/Kyiv)', () => {
  it('spring forward 2026-03-29: 03:30 does not exist locally and fires once, at 04:30 EEST', () => {
    const times = nextFireTimes('30 3 * * *', KYIV, new Date('2026-03-27T12:00:00Z'), 4);
    expect(iso(times)).toEqual([
      '2026-03-28T01:30:00.000Z', // 03:30 EET (UTC+2)
      '2026-03-29T01:30:00.000Z', // the skipped 03:30, shifted to 04:30 EEST
      '2026-03-30T00:30:00.000Z', // 03:30 EEST (UTC+3)
      '2026-03-31T00:30:00.000Z',
    ]);
  });

  it('fall back 2026-10-25: 03:30 happens twice locally and fires once', () => {
    const times = nextFireTimes('30 3 * * *', KYIV, new Date('2026-10-23T12:00:00Z'), 4);
    expect(iso(times)).toEqual([
      '2026-10-24T00:30:00.000Z',
      '2026-10-25T00:30:00.000Z', // first 03:30 (EEST); the second one (01:30Z) does not fire
      '2026-10-26T01:30:00.000Z',
      '2026-10-27T01:30:00.000Z',
    ]);
  });

  it('hourly fires every real hour: 23 times on the spring day, 25 on the autumn day', () => {
    // Local day boundaries: 2026-03-29 00:00 EET = 03-28T22:00Z; 2026-03-30 00:00 EEST = 03-29T21:00Z.
    const spring = fireTimesBetween('0 * * * *', KYIV, new Date('2026-03-28T21:59:59Z'), new Date('2026-03-29T20:59:59Z'), 100);
    expect(spring).toHaveLength(23);
    expect(iso(spring).slice(2, 4)).toEqual(['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z']); // 02:00 EET, 04:00 EEST
    const autumn = fireTimesBetween('0 * * * *', KYIV, new Date('2026-10-24T20:59:59Z'), new Date('2026-10-25T21:59:59Z'), 100);
    expect(autumn).toHaveLength(25);
    expect(iso(autumn).slice(3, 5)).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z']); // 03:00 EEST, 03:00 EET
    const diffs = autumn.slice(1).map((t, i) => t.getTime() - autumn[i].getTime());
    expect(new Set(diffs)).toEqual(new Set([3_600_000]));
  });
});

describe('fireTimesBetween', () => {
  const from = new Date('2026-01-01T00:00:00Z');
  it('is exclusive of the start and inclusive of the end', () => {
    expect(iso(fireTimesBetween('0 * * * *', 'UTC', from, new Date('2026-01-01T03:00:00Z'), 10))).toEqual([
      '2026-01-01T01:00:00.000Z', '2026-01-01T02:00:00.000Z', '2026-01-01T03:00:00.000Z',
    ]);
  });

  it('keeps the latest ticks when capped, oldest first, without walking the whole range', () => {
    const t0 = Date.now();
    const times = fireTimesBetween('* * * * *', 'UTC', new Date('2020-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'), 3);
    expect(iso(times)).toEqual(['2025-12-31T23:58:00.000Z', '2025-12-31T23:59:00.000Z', '2026-01-01T00:00:00.000Z']);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it('returns nothing for an empty window or a zero cap', () => {
    expect(fireTimesBetween('0 * * * *', 'UTC', from, from, 10)).toEqual([]);
    expect(fireTimesBetween('0 * * * *', 'UTC', from, new Date('2026-01-01T00:59:59Z'), 10)).toEqual([]);
    expect(fireTimesBetween('0 * * * *', 'UTC', from, new Date('2026-01-02T00:00:00Z'), 0)).toEqual([]);
  });

  it('throws on an invalid schedule; nextFireTime returns null instead', () => {
    expect(() => fireTimesBetween('nope', 'UTC', from, new Date(), 1)).toThrow(/expected 5 fields/);
    expect(() => nextFireTimes('0 * * * *', 'Mars/Olympus', from, 1)).toThrow(/time zone/);
    expect(nextFireTime('nope', 'UTC')).toBeNull();
    expect(nextFireTime('0 * * * *', 'UTC', from)?.toISOString()).toBe('2026-01-01T01:00:00.000Z');
  });

  it('supports a seconds field', () => {
    expect(iso(nextFireTimes('*/20 * * * * *', 'UTC', from, 2))).toEqual(['2026-01-01T00:00:20.000Z', '2026-01-01T00:00:40.000Z']);
  });
});
