import { z } from 'zod';

/**
 * Row validation driven by pipeline config: `columns: { code: 'string', population:
 * 'integer?' }` (a trailing ? allows null/missing). Config, not code, so an operator can
 * follow a source's schema change without a deploy. The output keeps only the listed
 * columns, in a stable shape. The zod schema built here (rowSchema) is the rule; the fast
 * paths in rows.ts and row-bytes.ts only ever accept and encode what it would.
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

/** A column spec's type without its optional mark. */
export const columnType = (type: string) => type.replace('?', '') as ColumnType;

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
    const t = base[columnType(type)];
    shape[name] = optional ? t.nullish().transform((v) => v ?? null) : t;
  }
  return z.object(shape);
}
