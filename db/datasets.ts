import type pg from 'pg';

/**
 * What freshness (SPEC §11) reads from Postgres: each pipeline with its newest run, and
 * what the last successful run wrote into each table sink (etl_table_sinks, written by the
 * Postgres mirror in its own transaction).
 */

type Q = Pick<pg.Pool, 'query'>;

export interface FreshnessPipelineRow {
  id: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  config: Record<string, unknown>;
  lastRun: { id: string; status: string; error: string | null; createdAt: Date; finishedAt: Date | null } | null;
}

/** json_build_object's timestamps arrive as ISO strings, not Dates. */
interface FreshnessQueryRow extends Omit<FreshnessPipelineRow, 'lastRun'> {
  lastRun: { id: string; status: string; error: string | null; createdAt: string; finishedAt: string | null } | null;
}

export async function pipelinesForFreshness(q: Q): Promise<FreshnessPipelineRow[]> {
  const { rows } = await q.query<FreshnessQueryRow>(
    `select p.id, p.cron, p.timezone, p.enabled, p.config,
       (select json_build_object('id', r.id, 'status', r.status, 'error', r.error, 'createdAt', r.created_at, 'finishedAt', r.finished_at)
        from etl_runs r where r.pipeline_id = p.id order by r.created_at desc nulls last, r.id desc nulls last limit 1) as "lastRun"
     from etl_pipelines p order by p.id`,
  );
  return rows.map((r) => ({
    ...r,
    lastRun: r.lastRun && { ...r.lastRun, createdAt: new Date(r.lastRun.createdAt), finishedAt: r.lastRun.finishedAt ? new Date(r.lastRun.finishedAt) : null },
  }));
}

/**
 * Records what a run committed into a table sink. Call it inside the mirror's
 * transaction (same client), so it never describes rows that were rolled back.
 */
export async function recordTableSink(q: Pick<pg.PoolClient, 'query'>, a: { table: string; pipelineId: string; runId: string; rows: number }): Promise<void> {
  await q.query(
    `insert into etl_table_sinks (table_name, pipeline_id, run_id, rows, updated_at) values ($1, $2, $3, $4, now())
     on conflict (table_name) do update set pipeline_id = excluded.pipeline_id, run_id = excluded.run_id,
       rows = excluded.rows, updated_at = excluded.updated_at`,
    [a.table, a.pipelineId, a.runId, a.rows],
  );
}

export interface TableSinkState {
  rows: number;
  runId: string | null;
  updatedAt: Date | null;
}

const TABLE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The table's state: from etl_table_sinks when the mirror recorded it, else from the table
 * itself (row count, newest synced_at and its run); null when the table does not exist.
 */
export async function tableSinkState(q: Q, table: string): Promise<TableSinkState | null> {
  if (!TABLE.test(table)) return null;
  const { rows } = await q.query<TableSinkState>(
    `select rows, run_id as "runId", updated_at as "updatedAt" from etl_table_sinks where table_name = $1`, [table]);
  if (rows[0]) return rows[0];
  const exists = await q.query<{ ok: boolean }>('select to_regclass($1) is not null as ok', [table]);
  if (!exists.rows[0]?.ok) return null;
  let r: { rows: number; updatedAt: Date | null; runId: string | null };
  try {
    // The sinks' bookkeeping columns (see bq_projects in schema.ts).
    r = (await q.query<{ rows: number; updatedAt: Date | null; runId: string | null }>(`select count(*)::int as rows, max(synced_at) as "updatedAt",
       (select last_run_id from "${table}" order by synced_at desc limit 1) as "runId" from "${table}"`)).rows[0];
  } catch {
    r = { ...(await q.query<{ rows: number }>(`select count(*)::int as rows from "${table}"`)).rows[0], updatedAt: null, runId: null };
  }
  return { rows: r.rows, runId: r.runId ?? null, updatedAt: r.rows > 0 ? r.updatedAt : null };
}
