import { z } from 'zod';
import { NonRetryableError } from '../../lib/errors';
import { ByteSink, compileByteEncoder } from './row-bytes';

/**
 * Row validation driven by pipeline config: `columns: { code: 'string', population:
 * 'integer?' }` (a trailing ? allows null/missing). Config, not code, so an operator can
 * follow a source's schema change without a deploy. The output keeps only the listed
 * columns, in a stable shape.
 */
export const COLUMN_TYPES = ['string', 'number', 'integer', 'boolean', 'timestamp', 'json'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];
export const columnSpecSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
    // A row is a parsed object: a column named like an Object.prototype member
    // ("constructor", "toString", …) would read the inherited value when the row lacks it.
    .refine((name) => !(name in Object.prototype), 'a column cannot be named like a member of Object.prototype'),
  z.string().regex(new RegExp(`^(${COLUMN_TYPES.join('|')})\\??$`), `a column type is one of ${COLUMN_TYPES.join(', ')}, optionally ending in ?`),
);
export type ColumnSpec = z.infer<typeof columnSpecSchema>;

const numeric = z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/).transform(Number)]);
const base: Record<ColumnType, z.ZodType> = {
  string: z.union([z.string(), z.number().transform(String)]),
  number: numeric.pipe(z.number().finite()),
  // ClickHouse and BigQuery send 64-bit integers as strings.
  integer: numeric.pipe(z.number().int()),
  boolean: z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]),
  timestamp: z.union([z.string(), z.number(), z.date()]).transform((v, ctx) => {
    const d = v instanceof Date ? v : new Date(typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : v);
    if (Number.isNaN(d.getTime())) {
      ctx.addIssue({ code: 'custom', message: 'not a timestamp' });
      return z.NEVER;
    }
    return d.toISOString();
  }),
  json: z.unknown(),
};

export function rowSchema(columns: ColumnSpec): z.ZodType<Record<string, unknown>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [name, type] of Object.entries(columns)) {
    const optional = type.endsWith('?');
    const t = base[type.replace('?', '') as ColumnType];
    shape[name] = optional ? t.nullish().transform((v) => v ?? null) : t;
  }
  return z.object(shape) as unknown as z.ZodType<Record<string, unknown>>;
}

export interface EncodedChunk {
  /** Output lines (NDJSON, or keyed lines), newline-terminated. */
  data: Buffer;
  /** Input lines read. */
  rows: number;
  bad: number;
  firstBad?: string;
}

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
  const schema = rowSchema(columns);
  const cols = Object.entries(columns).map(([name, type]) => ({
    name, prefix: JSON.stringify(name) + ':', optional: type.endsWith('?'), coerce: fastCoerce[type.replace('?', '') as ColumnType],
  }));
  const keyIndex = keyField ? cols.findIndex((c) => c.name === keyField) : -1;
  const values: unknown[] = new Array(cols.length);
  const bytes = compileByteEncoder(columns, keyField);
  const sink = (size: number) => new ByteSink(size + 1024);

  /** The hot loop, kept apart from encodeChunk so that leaving it (once per chunk) does
   *  not throw its optimised code away: V8 deoptimised the loop at every chunk's end when
   *  the result object was built in the same function. Returns the lines read. */
  function encodeInto(chunk: Buffer, out: ByteSink, opts: { offset: number; skipBad: boolean; what: string },
    bad: { n: number; first: string | undefined }): number {
    let rows = 0;
    for (let s = 0; s < chunk.length;) {
      let e = chunk.indexOf(0x0a, s);
      if (e < 0) e = chunk.length;
      if (bytes.line(chunk, s, e, out)) {
        out.byte(0x0a);
      } else {
        const row: unknown = JSON.parse(chunk.toString('utf8', s, e));
        const r = fast(row) ?? slow(row);
        if (typeof r === 'string') {
          out.utf8(r);
          out.byte(0x0a);
        } else {
          refuse(row, r, opts.offset + rows, opts, bad);
        }
      }
      rows++;
      s = e + 1;
    }
    return rows;
  }

  function refuse(row: unknown, issue: z.core.$ZodIssue, index: number, opts: { skipBad: boolean; what: string },
    bad: { n: number; first: string | undefined }): void {
    const key = keyField ? (row as Record<string, unknown> | null)?.[keyField] : undefined;
    const keyText = typeof key === 'string' || typeof key === 'number' ? ` (${keyField}=${String(key).slice(0, 64)})` : '';
    const msg = `${opts.what} row ${index}${keyText}: field "${issue.path.join('.') || '(row)'}": ${issue.message}`;
    if (!opts.skipBad) throw new NonRetryableError(`malformed ${msg}`);
    bad.n++;
    bad.first ??= msg;
  }

  /** The row's line, or undefined when the fast path is not sure. */
  function fast(row: unknown): string | undefined {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) return undefined;
    const r = row as Record<string, unknown>;
    for (let i = 0; i < cols.length; i++) {
      const c = cols[i]!;
      const raw = r[c.name];
      const v = c.optional && raw == null ? null : c.coerce(raw);
      if (v === SLOW) return undefined;
      values[i] = v;
    }
    let json = '{';
    for (let i = 0; i < cols.length; i++) {
      const v = values[i];
      json += (i ? ',' : '') + cols[i]!.prefix + (typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v));
    }
    json += '}';
    return keyIndex < 0 ? json : `${JSON.stringify(String(values[keyIndex]))}\t${json}`;
  }

  function slow(row: unknown): string | z.core.$ZodIssue {
    const res = schema.safeParse(row);
    if (!res.success) return res.error.issues[0]!;
    const json = JSON.stringify(res.data);
    return keyField ? `${JSON.stringify(String(res.data[keyField]))}\t${json}` : json;
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
    encodeChunk(chunk: Buffer, opts: { offset: number; skipBad: boolean; what: string }): EncodedChunk {
      const out = sink(chunk.length);
      const bad = { n: 0, first: undefined as string | undefined };
      const rows = encodeInto(chunk, out, opts, bad);
      return { data: out.take(), rows, bad: bad.n, firstBad: bad.first };
    },
  };
}
