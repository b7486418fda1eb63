// Client-side schedule checks. The server is the authority; this only catches typos early.

const FIELD_RE = /^[0-9A-Za-z*?/,\-#LW]+$/;

/** Returns an error message, or null when the expression looks acceptable. */
export function validateCron(expr: string): string | null {
  const s = expr.trim();
  if (!s) return 'Cron expression is required.';
  const fields = s.split(/\s+/);
  if (fields.length !== 5) {
    return `Expected 5 fields (minute hour day month weekday), got ${fields.length}${fields.length === 6 ? ': seconds are not supported' : ''}.`;
  }
  const bad = fields.find((f) => !FIELD_RE.test(f));
  if (bad !== undefined) return `Invalid field "${bad}".`;
  return null;
}

export function validateTimezone(tz: string): string | null {
  const s = tz.trim();
  if (!s) return 'Time zone is required.';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: s });
    return null;
  } catch {
    return `Unknown time zone "${s}".`;
  }
}

let zones: string[] | null = null;

/** IANA zone names known to this browser (for the input's datalist). */
export function knownTimezones(): string[] {
  if (zones) return zones;
  try {
    const sv = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf;
    zones = sv ? sv('timeZone') : [];
  } catch {
    zones = [];
  }
  if (!zones.includes('UTC')) zones = ['UTC', ...zones];
  return zones;
}
