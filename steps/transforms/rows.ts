import { z } from 'zod';
import { NonRetryableError } from '../errors';

/**
 * Row validation driven by pipeline config: `columns: { code: 'string', population:
 * 'integer?' }` (a trailing ? allows null/missing). Config, not code, so an operator can
 * follow a source's schema change without a deploy. The output keeps only the listed
 * columns, in a stable shape.
 */
export const COLUMN_TYPES = ['string', 'number', 'integer', 'boolean', 'timestamp', 'json'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];
export const columnSpecSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/),
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

export interface ValidatedBatch {
  rows: Record<string, unknown>[];
  bad: number;
  firstBad?: string;
}

/**
 * Validates a batch. A bad row fails the step with a message naming the row (absolute
 * index, and its key when it has one) and the field; never the row's content, which may
 * hold personal data. With `skipBad` bad rows are counted and left out instead.
 */
export function validateBatch(batch: readonly unknown[], schema: z.ZodType<Record<string, unknown>>, opts: {
  offset: number; skipBad: boolean; keyField?: string; what: string;
}): ValidatedBatch {
  const rows: Record<string, unknown>[] = [];
  let bad = 0;
  let firstBad: string | undefined;
  for (let i = 0; i < batch.length; i++) {
    const r = schema.safeParse(batch[i]);
    if (r.success) {
      rows.push(r.data);
      continue;
    }
    const issue = r.error.issues[0]!;
    const key = opts.keyField ? (batch[i] as Record<string, unknown> | null)?.[opts.keyField] : undefined;
    const keyText = typeof key === 'string' || typeof key === 'number' ? ` (${opts.keyField}=${String(key).slice(0, 64)})` : '';
    const msg = `${opts.what} row ${opts.offset + i}${keyText}: field "${issue.path.join('.') || '(row)'}": ${issue.message}`;
    if (!opts.skipBad) throw new NonRetryableError(`malformed ${msg}`);
    bad++;
    firstBad ??= msg;
  }
  return { rows, bad, firstBad };
}
