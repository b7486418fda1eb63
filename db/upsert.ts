import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { recordTableSink } from './datasets';
import { lockLiveAttempt, type StepFence } from './fence';
import { bqProjects } from './schema';
import { withClient, withTransaction } from './tx';

/**
 * Bulk loads into sink tables: COPY into a temporary stage, then one set-based
 * INSERT … ON CONFLICT merge, all in one transaction, so a load is all-or-nothing and a
 * re-run converges to the same rows. Identifiers never come from input: a table must be in
 * SINK_TABLES and every column must be one of its real columns (read from the drizzle
 * schema the migrations are generated from); they are still quoted.
 */

export interface SinkColumn {
  name: string;
  sqlType: string;
  notNull: boolean;
  hasDefault: boolean;
}

export interface SinkTable {
  name: string;
  columns: readonly SinkColumn[];
  primaryKey: readonly string[];
  /** Bookkeeping columns the merge fills itself (the run that last changed a row, when). */
  runIdColumn: string | null;
  syncedAtColumn: string | null;
}

function describe(table: PgTable, managed: { runId?: string; syncedAt?: string }): SinkTable {
  const cfg = getTableConfig(table);
  const pk = cfg.columns.filter((c) => c.primary).map((c) => c.name);
  for (const p of cfg.primaryKeys) pk.push(...p.columns.map((c) => c.name));
  return {
    name: cfg.name,
    columns: cfg.columns.map((c) => ({ name: c.name, sqlType: c.getSQLType(), notNull: c.notNull, hasDefault: c.hasDefault })),
    primaryKey: pk,
    runIdColumn: managed.runId ?? null,
    syncedAtColumn: managed.syncedAt ?? null,
  };
}

export const SINK_TABLES = {
  bq_projects: describe(bqProjects, { runId: 'last_run_id', syncedAt: 'synced_at' }),
} as const satisfies Record<string, SinkTable>;
export type SinkTableName = keyof typeof SINK_TABLES;

/** Postgres quote_ident: the name inside double quotes, embedded quotes doubled. */
export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** A validated load: which table, which columns (in COPY order), which key. */
export interface LoadTarget {
  table: SinkTable;
  columns: readonly SinkColumn[];
  keyColumns: readonly string[];
}

const STAGE = 'etl_upsert_stage';
const ORD = 'etl_ord';

/** Validates names against the whitelist; throws an Error saying what is wrong. `keyColumns`
 *  null = a plain COPY (no key needed). */
export function resolveTarget(table: string, columns: readonly string[], keyColumns: readonly string[] | null): LoadTarget {
  if (!Object.hasOwn(SINK_TABLES, table)) throw new Error(`unknown sink table ${JSON.stringify(table)} (known: ${Object.keys(SINK_TABLES).join(', ')})`);
  const t: SinkTable = SINK_TABLES[table as SinkTableName];
  const byName = new Map(t.columns.map((c) => [c.name, c]));
  const managed = [t.runIdColumn, t.syncedAtColumn].filter(Boolean);
  if (columns.length === 0) throw new Error(`${t.name}: no columns given`);
  if (new Set(columns).size !== columns.length) throw new Error(`${t.name}: a column is listed twice`);
  for (const c of columns) {
    if (!byName.has(c) || c === ORD) throw new Error(`${t.name} has no column ${JSON.stringify(c)}`);
    if (keyColumns && managed.includes(c)) throw new Error(`${t.name}.${c} is filled by the sink itself; leave it out of columns`);
  }
  for (const c of t.columns) {
    if (c.notNull && !c.hasDefault && !columns.includes(c.name)) throw new Error(`${t.name}.${c.name} is NOT NULL without a default: it must be among the columns`);
  }
  if (keyColumns) {
    // ON CONFLICT needs a unique index on exactly these columns; the primary key is the one we know.
    const pk = [...t.primaryKey].sort().join(',');
    if ([...keyColumns].sort().join(',') !== pk || keyColumns.some((k) => !columns.includes(k))) {
      throw new Error(`${t.name}: keyColumns must be its primary key (${t.primaryKey.join(', ')}) and be among the columns`);
    }
  }
  return { table: t, columns: columns.map((c) => byName.get(c)!), keyColumns: keyColumns ?? [] };
}

export interface StageMergeResult {
  /** Rows COPY put into the stage. */
  staged: number;
  /** Distinct keys among them (the last row of each key won). */
  distinct: number;
  inserted: number;
  /** Existing rows whose values changed; unchanged rows are not rewritten. */
  updated: number;
  /** Rows of the table whose key was not among the staged ones (with `deleteMissing`). */
  deleted: number;
}

/** mergeSql's one row. count(*) is a bigint, which pg returns as a string; the literal 0
 *  of a non-mirror merge is an int. */
interface MergeCounts {
  distinct_rows: string;
  inserted: string;
  updated: string;
  deleted: string | number;
}

/**
 * The set-based merge. src: DISTINCT ON over the ordinal, so the last row of a key wins and
 * ON CONFLICT never sees a key twice ("cannot affect row a second time"); the sort runs in
 * memory under the transaction's work_mem and on bytes (COLLATE "C": equality is the same
 * for a deterministic collation). changed: unchanged rows are dropped before the INSERT,
 * because ON CONFLICT locks (rewrites) every conflicting row even when its WHERE then skips
 * the update; the join halves a no-change re-run. The ON CONFLICT WHERE stays for rows
 * changed concurrently. xmax = 0 marks an inserted row.
 * With `mirror`, the same join is a FULL join: one pass over the table finds the new, the
 * changed and the vanished keys (a table row no staged key matched), and the vanished ones
 * are deleted through the primary key, in the same statement.
 */
function mergeSql(t: LoadTarget, mirror: boolean): string {
  const q = quoteIdent;
  const cols = t.columns.map((c) => q(c.name));
  const keys = t.keyColumns.map(q);
  const data = t.columns.filter((c) => !t.keyColumns.includes(c.name)).map((c) => q(c.name));
  const managed = [t.table.runIdColumn, t.table.syncedAtColumn].filter((c): c is string => c !== null).map(q);
  const managedVals = [...(t.table.runIdColumn ? ['$1::uuid'] : []), ...(t.table.syncedAtColumn ? ['now()'] : [])];
  const differs = (a: string, b: string) => `(${data.map((c) => `${a}.${c}`).join(', ')}) is distinct from (${data.map((c) => `${b}.${c}`).join(', ')})`;
  const onConflict = data.length === 0
    ? 'do nothing'
    : `do update set ${[...data, ...managed].map((c) => `${c} = excluded.${c}`).join(', ')} where ${differs('t', 'excluded')}`;
  const byBytes = keys.map((k) => `${k} collate "C"`).join(', ');
  const on = keys.map((k) => `t.${k} = s.${k}`).join(' and ');
  const gone = (k: string) => `etl_gone_${k.slice(1, -1)}`;
  return `with src as materialized (
      select distinct on (${byBytes}) ${cols.join(', ')} from ${STAGE} order by ${byBytes}, ${ORD} desc
    ), changed as materialized (
      select s.*${mirror ? `, ${keys.map((k) => `t.${k} as ${q(gone(k))}`).join(', ')}` : ''}
      from src s ${mirror ? 'full' : 'left'} join ${q(t.table.name)} t on ${on}
      where ${mirror ? `s.${keys[0]} is null or ` : ''}t.${keys[0]} is null${data.length ? ` or ${differs('t', 's')}` : ''}
    ), up as (
      insert into ${q(t.table.name)} as t (${[...cols, ...managed].join(', ')})
      select ${[...cols, ...managedVals].join(', ')} from changed where ${keys[0]} is not null
      on conflict (${keys.join(', ')}) ${onConflict}
      returning (xmax = 0) as ins
    )${mirror ? `, del as (
      delete from ${q(t.table.name)} t using changed c
      where c.${keys[0]} is null and ${keys.map((k) => `t.${k} = c.${q(gone(k))}`).join(' and ')}
      returning 1
    )` : ''}
    select (select count(*) from src) as distinct_rows,
           (select count(*) from up where ins) as inserted, (select count(*) from up where not ins) as updated,
           ${mirror ? '(select count(*) from del)' : '0'} as deleted`;
}

async function copyIn(client: pg.PoolClient, sql: string, data: AsyncIterable<string>, signal?: AbortSignal): Promise<number> {
  const stream = client.query(copyFrom(sql));
  // pipeline() awaits each write's drain, so at most a socket buffer plus one chunk is held;
  // on an error or abort it destroys the COPY, which sends CopyFail to the server.
  await (signal ? pipeline(Readable.from(data), stream, { signal }) : pipeline(Readable.from(data), stream));
  return stream.rowCount;
}

/** A merge of a million rows runs for seconds; an abort (run cancelled, step timeout)
 *  cancels the statement on the server instead of waiting for it. The cancel request is
 *  awaited before the connection goes back to the pool, so it cannot hit another query. */
async function cancellable<T>(pool: pg.Pool, pid: number, signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
  if (!signal) return run();
  signal.throwIfAborted();
  let cancelling: Promise<unknown> | undefined;
  const onAbort = () => { cancelling = pool.query('select pg_cancel_backend($1)', [pid]).catch(() => {}); };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await run();
  } finally {
    signal.removeEventListener('abort', onAbort);
    await cancelling;
  }
}

/** Upsert: COPY `data` (COPY text-format lines in the target's column order) into a
 *  temporary stage, call `beforeMerge(staged)` (may throw to abort the load), merge, with
 *  `deleteMissing` delete the rows whose key was not staged (a mirror of the source), and
 *  with `fence` verify the step attempt is still live (db/fence.ts) as the last statement
 *  before COMMIT, holding its row lock through the commit. Any failure rolls back
 *  everything, including the stage. */
export async function copyAndMerge(pool: pg.Pool, a: {
  target: LoadTarget;
  runId: string;
  data: AsyncIterable<string>;
  signal?: AbortSignal;
  beforeMerge?: (staged: number) => void | Promise<void>;
  deleteMissing?: boolean;
  fence?: StepFence;
  /** With deleteMissing: record the table's new state for GET /datasets (etl_table_sinks). */
  pipelineId?: string;
}): Promise<StageMergeResult> {
  const t = a.target;
  const cols = t.columns.map((c) => quoteIdent(c.name)).join(', ');
  return withTransaction(pool, async (client) => {
    // SET LOCAL: the DISTINCT ON sort of a million rows spills to disk at 64 MB (measured:
    // ~140 MB in memory) and the join's hash of the table wants ~100 MB.
    const { rows: [{ pid }] } = await client.query<{ pid: number }>(`select pg_backend_pid() as pid, set_config('work_mem', '256MB', true)`);
    await client.query(`create temp table ${STAGE} on commit drop as select ${cols} from ${quoteIdent(t.table.name)} with no data`);
    await client.query(`alter table ${STAGE} add column ${ORD} bigint generated always as identity`);
    const staged = await copyIn(client, `copy ${STAGE} (${cols}) from stdin`, a.data, a.signal);
    a.signal?.throwIfAborted();
    await a.beforeMerge?.(staged);
    // Without statistics the planner guesses 200 distinct keys and joins by a million index
    // lookups; a sampled ANALYZE costs a fraction of a second and gets a hash join.
    await client.query(`analyze ${STAGE}`);
    const { rows } = await cancellable(pool, pid, a.signal, () => client.query<MergeCounts>(mergeSql(t, !!a.deleteMissing), t.table.runIdColumn ? [a.runId] : []));
    // A mirror holds exactly the distinct staged keys now.
    if (a.deleteMissing && a.pipelineId) await recordTableSink(client, { table: t.table.name, pipelineId: a.pipelineId, runId: a.runId, rows: Number(rows[0].distinct_rows) });
    // A cancel that arrived just after the merge still wins: nothing is committed.
    a.signal?.throwIfAborted();
    // Last, so the step row is locked only for the commit: a cancel or takeover that got
    // in first refuses the commit; one that comes later waits for it.
    if (a.fence) await lockLiveAttempt(client, a.fence);
    return { staged, distinct: Number(rows[0].distinct_rows), inserted: Number(rows[0].inserted), updated: Number(rows[0].updated), deleted: Number(rows[0].deleted) };
  });
}

/** Plain COPY straight into the table (one statement, so atomic): no dedupe, no upsert. */
export async function copyIntoTable(pool: pg.Pool, a: { target: LoadTarget; data: AsyncIterable<string>; signal?: AbortSignal }): Promise<number> {
  const cols = a.target.columns.map((c) => quoteIdent(c.name)).join(', ');
  return withClient(pool, (client) => copyIn(client, `copy ${quoteIdent(a.target.table.name)} (${cols}) from stdin`, a.data, a.signal));
}
