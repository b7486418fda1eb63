import type { z } from 'zod';
import { NonRetryableError } from '../../lib/errors';
import { ByteSink } from './byte-sink';
import { columnType, rowSchema, type ColumnSpec, type ColumnType } from './columns';
import { compileByteEncoder } from './row-bytes';

export interface EncodedChunk {
  /** Output lines (NDJSON, or keyed lines), newline-terminated. */
  data: Buffer;
  /** Input lines read. */
  rows: number;
  bad: number;
  firstBad?: string;
}

interface EncodeOpts {
  /** The absolute index of the chunk's first line, for messages. */
  offset: number;
  skipBad: boolean;
  /** What the rows are, for messages ("dataset x"). */
  what: string;
  /** With skipBad, told about each bad row (the bad-rows tracker keeps samples). */
  onBad?: (bad: BadRow) => void;
}

/** A rejected line: its index (offset-based, as in messages), why, where, and its text. */
export interface BadRow {
  index: number;
  reason: string;
  path: string;
  line: string;
}

type BadRows = { n: number; first: string | undefined };

/** A compiled fast path's "not sure": the row goes through the zod schema instead. */
const SLOW = Symbol('slow');
type Coerce = (v: unknown) => unknown;
const INT_TEXT = /^-?\d{1,15}$/;
const fastCoerce: Record<ColumnType, Coerce> = {
  string: (v) => (typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : SLOW),
  number: (v) => (typeof v === 'number' && Number.isFinite(v) ? v : SLOW),
  // Up to 15 digits a decimal string is always a safe integer.
  integer: (v) => (typeof v === 'number' ? (Number.isSafeInteger(v) ? v : SLOW) : typeof v === 'string' && INT_TEXT.test(v) ? Number(v) : SLOW),
  boolean: (v) => (typeof v === 'boolean' ? v : SLOW),
  timestamp: () => SLOW,
  json: (v) => (v === undefined ? SLOW : v),
};

/**
 * Validates and encodes rows against a column spec. The zod schema (rowSchema) is the
 * rule; a fast path compiled from the same spec accepts the common case (values already
 * of their column's type, or 64-bit integers as decimal strings) and writes the JSON line
 * directly, with no intermediate object. Any other row goes through zod, so the fast path
 * never accepts a row zod would refuse, nor encodes one differently (rows.test.ts checks
 * both on generated rows).
 */
export function rowEncoder(columns: ColumnSpec, keyField?: string) {
  const { schema, fast, slow } = objectEncoder(columns, keyField);
  const bytes = compileByteEncoder(columns, keyField);
  const sink = (size: number) => new ByteSink(size + 1024);

  /** The hot loop, kept apart from encodeChunk so that leaving it (once per chunk) does
   *  not throw its optimised code away: V8 deoptimised the loop at every chunk's end when
   *  the result object was built in the same function. Returns the lines read. */
  function encodeInto(chunk: Buffer, out: ByteSink, opts: EncodeOpts, bad: BadRows): number {
    let rows = 0;
    for (let s = 0; s < chunk.length;) {
      let e = chunk.indexOf(0x0a, s);
      if (e < 0) e = chunk.length;
      if (bytes.line(chunk, s, e, out)) {
        out.byte(0x0a);
      } else {
        const line = chunk.toString('utf8', s, e);
        const row: unknown = JSON.parse(line);
        const r = fast(row) ?? slow(row);
        if (typeof r === 'string') {
          out.utf8(r);
          out.byte(0x0a);
        } else {
          refuse(row, line, r, opts.offset + rows, keyField, opts, bad);
        }
      }
      rows++;
      s = e + 1;
    }
    return rows;
  }

  return {
    schema,
    /** One row: its line, or the first zod issue. */
    encode(row: unknown): string | z.core.$ZodIssue {
      return fast(row) ?? slow(row);
    },
    /** Only the zod path (for tests comparing the two). */
    encodeSlow: slow,
    /**
     * A chunk of NDJSON bytes (whole lines), giving the output lines as bytes: the
     * byte-level fast path (row-bytes.ts) first, the object fast path and zod for the
     * lines it leaves. A bad row fails the step with a message naming the row (absolute
     * index, and its key when it has one) and the field; never the row's content, which
     * may hold personal data. With `skipBad` bad rows are counted and left out instead.
     */
    encodeChunk(chunk: Buffer, opts: EncodeOpts): EncodedChunk {
      // Keyed lines are longer than the source's (the key goes in front): room for that.
      const out = sink(keyField ? chunk.length + (chunk.length >> 2) : chunk.length);
      const bad: BadRows = { n: 0, first: undefined };
      const rows = encodeInto(chunk, out, opts, bad);
      return { data: out.view(), rows, bad: bad.n, firstBad: bad.first }; // a sink per chunk: no copy
    },
  };
}

/**
 * The object-level paths for one parsed row: `fast` (values already of their type; the
 * line, or undefined when not sure) and `slow` (zod; the line, or the first issue).
 * A line is the row's JSON, keyed (`"<key>"\t<json>`) when there is a key field.
 */
function objectEncoder(columns: ColumnSpec, keyField: string | undefined) {
  const schema = rowSchema(columns);
  const cols = Object.entries(columns).map(([name, type]) => ({
    name, prefix: JSON.stringify(name) + ':', optional: type.endsWith('?'), coerce: fastCoerce[columnType(type)],
  }));
  const keyIndex = keyField ? cols.findIndex((c) => c.name === keyField) : -1;
  const values: unknown[] = new Array(cols.length);

  function fast(row: unknown): string | undefined {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) return undefined;
    const r = row as Record<string, unknown>;
    for (let i = 0; i < cols.length; i++) {
      const c = cols[i];
      const raw = r[c.name];
      const v = c.optional && raw == null ? null : c.coerce(raw);
      if (v === SLOW) return undefined;
      values[i] = v;
    }
    let json = '{';
    for (let i = 0; i < cols.length; i++) {
      const v = values[i];
      json += (i ? ',' : '') + cols[i].prefix + (typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v));
    }
    json += '}';
    return keyIndex < 0 ? json : `${JSON.stringify(String(values[keyIndex]))}\t${json}`;
  }

  function slow(row: unknown): string | z.core.$ZodIssue {
    const res = schema.safeParse(row);
    if (!res.success) return res.error.issues[0];
    const json = JSON.stringify(res.data);
    return keyField ? `${JSON.stringify(String(res.data[keyField]))}\t${json}` : json;
  }

  return { schema, fast, slow };
}

/** A bad row: fails the step, or with `skipBad` is counted (the first one's message kept). */
function refuse(row: unknown, line: string, issue: z.core.$ZodIssue, index: number, keyField: string | undefined,
  opts: EncodeOpts, bad: BadRows): void {
  const key = keyField ? (row as Record<string, unknown> | null)?.[keyField] : undefined;
  const keyText = typeof key === 'string' || typeof key === 'number' ? ` (${keyField}=${String(key).slice(0, 64)})` : '';
  const msg = `${opts.what} row ${index}${keyText}: field "${issue.path.join('.') || '(row)'}": ${issue.message}`;
  if (!opts.skipBad) throw new NonRetryableError(`malformed ${msg}`);
  bad.n++;
  bad.first ??= msg;
  opts.onBad?.({ index, reason: msg, path: issue.path.join('.'), line });
}
