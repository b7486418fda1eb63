import { CronExpressionParser, type CronExpression } from 'cron-parser';

/**
 * Cron schedules of pipelines: validation for the API and fire times for the scheduler.
 * Both must agree, so both go through here. Times are computed in the pipeline's IANA
 * zone by cron-parser (luxon): a local time skipped by a spring-forward change fires once
 * at the shifted time, and one repeated by a fall-back change fires once (its first
 * occurrence); an hourly expression fires every real hour across either change.
 */

const MAX_CRON_LENGTH = 120;
const FIELD = /^[0-9A-Za-z*?,/#-]+$/;
// `H` (cron-parser's randomised value) picks a different minute in every process that
// parses it, so replicas would disagree on the tick. Day names like THU are fine.
const HASHED = /(^|,)H(?=$|[(/,])/;
const ZONE = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+){0,2}$/;

export interface CronOptions {
  /** Accept a leading seconds field. Only the scheduler's own tests use it, to run
   *  schedules in seconds; the API, the page and production never do. */
  allowSeconds?: boolean;
}

export function validateCron(cron: string, o: CronOptions = {}): string | null {
  if (typeof cron !== 'string' || cron.trim() === '') return 'the cron expression is empty';
  if (cron.length > MAX_CRON_LENGTH) return `the cron expression is longer than ${MAX_CRON_LENGTH} characters`;
  const fields = cron.trim().split(/\s+/);
  // Minute resolution only (SPEC §7): a seconds field would fire (and, disabled, log a
  // tick) every second.
  if (fields.length !== 5 && !(o.allowSeconds && fields.length === 6)) {
    return `expected 5 fields (minute hour day-of-month month day-of-week); got ${fields.length}${fields.length === 6 ? ' (a seconds field is not supported)' : ''}`;
  }
  const bad = fields.findIndex((f) => !FIELD.test(f));
  if (bad >= 0) return `field ${bad + 1} has characters a cron field cannot contain`;
  if (fields.some((f) => HASHED.test(f))) return 'randomised fields (H) are not supported';
  try {
    // next() also rejects expressions that never fire, e.g. 30 February.
    parse(cron, 'UTC', new Date()).next();
  } catch (err) {
    return `invalid cron expression: ${err instanceof Error ? err.message : 'unparseable'}`;
  }
  return null;
}

export function validateTimezone(tz: string): string | null {
  if (typeof tz !== 'string' || tz === '') return 'the time zone is empty';
  if (tz.length > 64 || !ZONE.test(tz)) return 'the time zone is not an IANA zone name (e.g. Europe/Kyiv)';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    return 'unknown time zone';
  }
  return null;
}

/** The error message of an invalid schedule, or null when both parts are valid. */
export function validateSchedule(cron: string, timezone: string, o: CronOptions = {}): string | null {
  return validateCron(cron, o) ?? validateTimezone(timezone);
}

/** The next `count` fire times strictly after `after`. Throws on an invalid schedule. */
export function nextFireTimes(cron: string, tz: string, after: Date, count: number): Date[] {
  assertValid(cron, tz);
  const it = parse(cron, tz, after);
  const out: Date[] = [];
  for (let i = 0; i < count; i++) out.push(it.next().toDate());
  return out;
}

/** The next fire time after `after`, or null when the stored schedule is invalid. */
export function nextFireTime(cron: string, tz: string, after = new Date()): Date | null {
  try {
    return nextFireTimes(cron, tz, after, 1)[0] ?? null;
  } catch {
    return null;
  }
}

/**
 * Fire times in (fromExclusive, toInclusive], oldest first. When there are more than
 * `cap`, the latest `cap` are returned: after a long downtime the recent ticks are the
 * ones worth catching up, and walking backwards never iterates a year of minutes.
 */
export function fireTimesBetween(cron: string, tz: string, fromExclusive: Date, toInclusive: Date, cap: number): Date[] {
  assertValid(cron, tz);
  if (cap <= 0 || toInclusive.getTime() <= fromExclusive.getTime()) return [];
  // prev() excludes its start, so start just after `toInclusive` to include a tick on it.
  const it = parse(cron, tz, new Date(toInclusive.getTime() + 1));
  const out: Date[] = [];
  while (out.length < cap) {
    const t = it.prev().toDate();
    if (t.getTime() <= fromExclusive.getTime()) break;
    out.push(t);
  }
  return out.reverse();
}

// Fire-time maths accepts what the scheduler was allowed to store; callers validate input.
function assertValid(cron: string, tz: string): void {
  const err = validateSchedule(cron, tz, { allowSeconds: true });
  if (err) throw new Error(err);
}

function parse(cron: string, tz: string, currentDate: Date): CronExpression {
  return CronExpressionParser.parse(cron.trim(), { tz, currentDate });
}
