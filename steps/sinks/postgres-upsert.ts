import type { Database } from '../../db/client';
import type { StepFence } from '../../db/fence';
import { copyAndMerge, copyIntoTable, resolveTarget, type LoadTarget, type SinkTableName } from '../../db/upsert';
import { NonRetryableError, StepAbortedError } from '../../lib/errors';
import { checkRowCount, type DataCheckPolicy } from './data-check';
import { KeySet } from './key-set';

/**
 * Bulk upsert of streamed rows into a whitelisted Postgres table (bq.projects' sink).
 * Rows are encoded as COPY text format here and loaded by db/upsert.ts in one transaction:
 * all or nothing, no duplicates on re-run, unchanged rows left untouched. Memory: one batch
 * plus one COPY chunk, and the KeySet of the keys seen (8-byte slots, at most half full:
 * 16 MB at a million keys; past two million keys it lets go and the merge dedupes in SQL).
 *
 * Values: null/undefined → NULL; Date → ISO 8601; objects and arrays → JSON; everything else
 * → String(v). Row properties are the table's column names. Staged rows carry timestamps as
 * ISO strings already (a Date costs a toISOString, ~1.5 µs: 3 s of CPU per 1M rows × 2 dates).
 *
 * NUL (U+0000): Postgres text cannot store it. By default a value containing one fails the
 * load with a NonRetryableError naming the row and column (the data is wrong upstream and an
 * operator should see it); `nulBytes: 'strip'` removes NULs instead.
 */

export interface UpsertRowsArgs {
  db: Database;
  table: SinkTableName;
  /** Must be the table's primary key. */
  keyColumns: string[];
  /** Columns to load, in any order; row properties of other names are ignored. */
  columns: string[];
  batches: AsyncIterable<readonly Record<string, unknown>[]>;
  runId: string;
  signal?: AbortSignal;
  /** Data check against `lastGoodRows` (e.g. the last good run's row count), before the merge. */
  check?: DataCheckPolicy;
  lastGoodRows?: number | null;
  nulBytes?: 'reject' | 'strip';
  /** Mirror the source: delete the table's rows whose key is not among these rows, in the
   *  same transaction. */
  deleteMissing?: boolean;
  /** Commit only if this step attempt is still live (db/fence.ts), checked in the same
   *  transaction; otherwise StepAbortedError and nothing changes. */
  fence?: StepFence;
  /** With deleteMissing: the pipeline recorded as the table's writer (GET /datasets). */
  pipelineId?: string;
}

export interface UpsertRowsResult {
  /** Rows received. */
  rows: number;
  inserted: number;
  updated: number;
  /** Keys already present with identical values (not rewritten). */
  unchanged: number;
  /** Rows whose key repeated an earlier row's in this load (the last one won). */
  duplicates: number;
  /** Rows deleted because their key is gone from the source (with deleteMissing). */
  deleted: number;
}

export interface CopyRowsArgs {
  db: Database;
  table: SinkTableName;
  columns: string[];
  batches: AsyncIterable<readonly Record<string, unknown>[]>;
  signal?: AbortSignal;
  nulBytes?: 'reject' | 'strip';
}

/** Characters per COPY message: big enough that the per-message cost vanishes next to the
 *  server's per-row work, small enough that memory stays flat. */
const CHUNK_CHARS = 256 * 1024;

export async function upsertRows(a: UpsertRowsArgs): Promise<UpsertRowsResult> {
  const target = resolve(a.table, a.columns, a.keyColumns);
  const enc = new Encoder(target, a.nulBytes ?? 'reject', true);
  try {
    const r = await copyAndMerge(a.db.pool, {
      target,
      runId: a.runId,
      data: enc.lines(a.batches, a.signal),
      keysUnique: () => enc.keys?.unique ?? false,
      signal: a.signal,
      beforeMerge: (staged) => checkRowCount(staged, a.lastGoodRows ?? null, a.check),
      deleteMissing: a.deleteMissing,
      fence: a.fence,
      pipelineId: a.pipelineId,
    });
    return {
      rows: r.staged, inserted: r.inserted, updated: r.updated, unchanged: r.distinct - r.inserted - r.updated,
      duplicates: r.staged - r.distinct, deleted: r.deleted,
    };
  } catch (err) {
    throw translate(err, a.table, a.signal);
  }
}

/** The same rows through one plain COPY into the table: no stage, no dedupe, no upsert. The
 *  raw-COPY baseline of the sinks benchmark; also fine for loading an empty table. */
export async function copyRows(a: CopyRowsArgs): Promise<{ rows: number }> {
  const target = resolve(a.table, a.columns, null);
  const enc = new Encoder(target, a.nulBytes ?? 'reject');
  try {
    return { rows: await copyIntoTable(a.db.pool, { target, data: enc.lines(a.batches, a.signal), signal: a.signal }) };
  } catch (err) {
    throw translate(err, a.table, a.signal);
  }
}

function resolve(table: string, columns: string[], keyColumns: string[] | null): LoadTarget {
  try {
    return resolveTarget(table, columns, keyColumns);
  } catch (err) {
    throw new NonRetryableError(`postgres sink: ${(err as Error).message}`);
  }
}

/** Bad data (SQLSTATE class 22) and constraint violations (23) fail the same way on every
 *  attempt; connection and server trouble stays retryable. An abort surfaces as the
 *  signal's reason, whatever the stream layer wrapped it in. */
function translate(err: unknown, table: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof StepAbortedError) return err;
  const pgErr = err as { code?: unknown; message?: string; where?: string; detail?: string };
  if (typeof pgErr.code === 'string' && /^2[23]/.test(pgErr.code)) {
    const where = pgErr.where ? ` (${pgErr.where.slice(0, 300)})` : '';
    return new NonRetryableError(`postgres sink ${table}: ${pgErr.message}${where}`, { sqlstate: pgErr.code });
  }
  return err;
}

const SPECIAL = /[\\\n\r\t\0]/;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Key types whose equality in Postgres is equality of the text COPY sends (deterministic
 *  collation): for those, KeySet can tell that no key repeats. Not varchar(n): its input
 *  silently cuts trailing spaces past n, so 'ab ' and 'ab  ' would be one key there. */
const TEXT_KEY = /^(text|varchar|character varying)$/;

/** Rows → COPY text format: tab-separated, `\N` for NULL, backslash escapes for backslash,
 *  newline, carriage return and tab (so no value can end a row, split a column or forge
 *  the `\.` end marker). Multi-byte UTF-8 needs no escaping. With `trackKeys` and text
 *  keys, `keys` tells afterwards whether any key repeated. */
class Encoder {
  rows = 0;
  readonly keys: KeySet | null;
  private readonly names: string[];
  private readonly isKey: boolean[];

  constructor(private target: LoadTarget, private nul: 'reject' | 'strip', trackKeys = false) {
    this.names = target.columns.map((c) => c.name);
    this.isKey = this.names.map((n) => target.keyColumns.includes(n));
    const textKeys = target.keyColumns.length > 0 && target.columns.every((c) => !target.keyColumns.includes(c.name) || TEXT_KEY.test(c.sqlType));
    this.keys = trackKeys && textKeys ? new KeySet() : null;
  }

  async *lines(batches: AsyncIterable<readonly Record<string, unknown>[]>, signal?: AbortSignal): AsyncGenerator<string> {
    let buf = '';
    for await (const batch of batches) {
      signal?.throwIfAborted();
      const keys = this.keys;
      for (const row of batch) {
        this.rows++;
        let key: string | null = null;
        for (let i = 0; i < this.names.length; i++) {
          if (i > 0) buf += '\t';
          const v = this.value(row[this.names[i]], i);
          buf += v;
          // Escaped values hold no raw tab, so joining the parts with one is unambiguous.
          if (keys && this.isKey[i]) key = key === null ? v : `${key}\t${v}`;
        }
        if (key !== null) keys!.add(key);
        buf += '\n';
      }
      if (buf.length >= CHUNK_CHARS) {
        yield buf;
        buf = '';
      }
    }
    if (buf) yield buf;
  }

  private value(v: unknown, col: number): string {
    if (v === null || v === undefined) {
      if (this.isKey[col]) this.fail(col, 'key column is null');
      return '\\N';
    }
    let s: string;
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
    else if (v instanceof Date) {
      if (Number.isNaN(v.getTime())) this.fail(col, 'invalid Date');
      return v.toISOString();
    } else s = JSON.stringify(v);
    if (!SPECIAL.test(s)) return s;
    if (s.includes('\0')) {
      if (this.nul === 'reject') this.fail(col, 'value contains a NUL character, which Postgres text cannot store (nulBytes: "strip" removes it)');
      s = s.replaceAll('\0', '');
    }
    return s.replace(/[\\\n\r\t]/g, (c) => ESCAPES[c]);
  }

  private fail(col: number, why: string): never {
    throw new NonRetryableError(`postgres sink ${this.target.table.name}: row ${this.rows}, column ${this.names[col]}: ${why}`);
  }
}
