// BigQuery REST wire details for the sandbox emulator: which table a query
// reads, how values are encoded in `rows[].f[].v`, and error bodies shaped like
// Google's so @google-cloud/bigquery turns them into ApiError with the right code.

export type SandboxColumnType = 'STRING' | 'INTEGER' | 'FLOAT' | 'TIMESTAMP' | 'BOOLEAN';

export interface SandboxColumn {
  name: string;
  type: SandboxColumnType;
}

/**
 * A table whose rows are produced on demand: `row(i)` for 0 <= i < rowCount,
 * values in schema order. Nothing is materialised, so a 2,000,000-row table
 * costs no memory. TIMESTAMP values may be a Date, epoch milliseconds (number)
 * or an ISO-8601 string; null/undefined is SQL NULL.
 */
export interface SandboxTable {
  schema: SandboxColumn[];
  rowCount: number;
  row(i: number): readonly SandboxValue[];
}

/** A cell of a sandbox row: what the STRING, INTEGER, FLOAT, BOOLEAN and TIMESTAMP encoders take. */
export type SandboxValue = string | number | boolean | bigint | Date | null | undefined;

/** How the caller asked TIMESTAMPs to be rendered (BigQuery `formatOptions`). */
export type TimestampFormat = 'int64-micros' | 'float-seconds' | 'iso';

/**
 * The first table named after FROM, reduced to its last segment:
 * FROM `proj.ds.countries`, FROM `proj`.`ds`.`countries`, FROM ds.countries
 * all give "countries". Good enough for the sandbox's pipeline SQL; this is not
 * a SQL parser and does not try to be one.
 */
export function tableNameFromSql(sql: string): string | null {
  const noComments = sql.replace(/--[^\n]*/g, ' ').replace(/\/\*[\s\S]*?\*\//g, ' ');
  const m = /\bFROM\s+((?:`[^`]+`|[\w-]+)(?:\s*\.\s*(?:`[^`]+`|[\w-]+))*)/i.exec(noComments);
  if (!m?.[1]) return null;
  const parts = m[1].replace(/`/g, '').split('.').map((s) => s.trim()).filter(Boolean);
  return parts.at(-1) ?? null;
}

/** The full reference as written (for error messages), e.g. "proj.ds.countries". */
export function tableRefFromSql(sql: string): string {
  const m = /\bFROM\s+((?:`[^`]+`|[\w-]+)(?:\s*\.\s*(?:`[^`]+`|[\w-]+))*)/i.exec(sql);
  return m?.[1]?.replace(/`/g, '').replace(/\s+/g, '') ?? '?';
}

/** A trailing `LIMIT n` (optionally followed by `;`), else null. */
export function limitFromSql(sql: string): number | null {
  const m = /\bLIMIT\s+(\d+)\s*;?\s*$/i.exec(sql.trim());
  return m?.[1] ? Number(m[1]) : null;
}

export function schemaJson(table: SandboxTable): { fields: { name: string; type: string; mode: string }[] } {
  return { fields: table.schema.map((c) => ({ name: c.name, type: c.type, mode: 'NULLABLE' })) };
}

/**
 * Rows [start, end) as the JSON text of a `rows` array. Built as a string
 * rather than objects + JSON.stringify because this is the emulator's hot
 * path (10,000-row pages); every non-null value is a JSON string, as on the wire.
 */
export function encodeRows(table: SandboxTable, start: number, end: number, ts: TimestampFormat): string {
  const types = table.schema.map((c) => c.type);
  // Only STRING values can hold characters that need JSON escaping; numbers,
  // booleans and timestamps are emitted as-is, which halves the encode time.
  const needsEscape = types.map((t) => t === 'STRING');
  let out = '[';
  for (let i = start; i < end; i++) {
    const values = table.row(i);
    out += i === start ? '{"f":[' : ',{"f":[';
    for (let c = 0; c < types.length; c++) {
      const v = encodeValue(values[c], types[c], ts);
      if (c > 0) out += ',';
      out += v === null ? '{"v":null}' : needsEscape[c] ? `{"v":${JSON.stringify(v)}}` : `{"v":"${v}"}`;
    }
    out += ']}';
  }
  return out + ']';
}

function encodeValue(v: SandboxValue, type: SandboxColumnType, ts: TimestampFormat): string | null {
  if (v === null || v === undefined) return null;
  switch (type) {
    case 'STRING':
      return String(v);
    case 'INTEGER':
      return typeof v === 'bigint' ? v.toString() : String(Math.trunc(Number(v)));
    case 'FLOAT':
      return String(Number(v));
    case 'BOOLEAN':
      return v ? 'true' : 'false';
    case 'TIMESTAMP':
      return encodeTimestamp(v, ts);
  }
}

function encodeTimestamp(v: unknown, ts: TimestampFormat): string {
  const ms = v instanceof Date ? v.getTime() : typeof v === 'number' ? v : Date.parse(String(v));
  if (!Number.isFinite(ms)) throw new Error(`invalid TIMESTAMP value ${String(v)}`);
  const whole = Math.floor(ms);
  switch (ts) {
    case 'int64-micros':
      // What the v8 client asks for by default (formatOptions.useInt64Timestamp=true).
      return (BigInt(whole) * 1000n).toString();
    case 'float-seconds':
      // BigQuery's legacy default: seconds with a fraction.
      return (whole / 1000).toString();
    case 'iso':
      return new Date(whole).toISOString().replace('Z', '000Z');
  }
}

/**
 * Decide the TIMESTAMP rendering from `formatOptions` as BigQuery does:
 * ISO8601_STRING wins, then useInt64Timestamp/INT64, else float seconds.
 */
export function timestampFormat(opts: { useInt64Timestamp?: unknown; timestampOutputFormat?: unknown }): TimestampFormat {
  if (opts.timestampOutputFormat === 'ISO8601_STRING') return 'iso';
  if (opts.useInt64Timestamp === true || opts.useInt64Timestamp === 'true') return 'int64-micros';
  if (opts.timestampOutputFormat === 'INT64') return 'int64-micros';
  return 'float-seconds';
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'ALREADY_EXISTS',
};

/** Google's JSON error envelope; the client reads error.code/message/errors. */
export function bqErrorBody(code: number, reason: string, message: string): unknown {
  return {
    error: {
      code,
      message,
      errors: [{ message, domain: 'global', reason }],
      status: STATUS_NAMES[code] ?? 'UNKNOWN',
    },
  };
}
