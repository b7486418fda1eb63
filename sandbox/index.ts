import { startBigQueryEmulator } from './bigquery-emulator';
import { tableNameFromSql, type SandboxTable } from './bigquery-wire';
import { startClickHouseFake } from './clickhouse-fake';
import { sandboxBigQueryTables, sandboxTopDests } from './data';
import { rowsFromColumns, tableFromColumns, type Columns } from './generate';
import { startYespoFake } from './yespo-fake';

/**
 * The local stand-ins for BigQuery, ClickHouse and Yespo that `npm start` runs on a
 * machine with no credentials, so every pipeline works end to end on sandbox data.
 * What they serve follows the pipelines they are given: a query pipeline's tables come
 * from hand-written realistic data where there is some, else are generated from the
 * columns it declares; each Yespo pipeline's group gets contacts.
 */
export interface Sandbox {
  env: { SANDBOX_BIGQUERY_URL: string; SANDBOX_CLICKHOUSE_URL: string; SANDBOX_YESPO_URL: string };
  close(): Promise<void>;
}

/** What the sandbox needs of a pipeline definition (workflows/engine/define.ts). */
export interface SandboxPipeline {
  source: { kind: string };
  config: Record<string, unknown>;
}

interface DatasetSpec { sql: string; columns: Columns }

function datasetsOf(p: SandboxPipeline): DatasetSpec[] {
  const list = p.config.datasets;
  const isDataset = (d: unknown): d is DatasetSpec => {
    const x = d as { sql?: unknown; columns?: unknown } | null | undefined;
    return typeof x?.sql === 'string' && typeof x?.columns === 'object';
  };
  return Array.isArray(list) ? list.filter(isDataset) : [];
}

/** BigQuery tables for every BigQuery pipeline given, by table name. */
export function sandboxTablesFor(pipelines: readonly SandboxPipeline[], opts: { projects?: number } = {}): Record<string, SandboxTable> {
  const tables: Record<string, SandboxTable> = sandboxBigQueryTables(opts);
  for (const p of pipelines.filter((x) => x.source.kind === 'bigquery')) {
    for (const d of datasetsOf(p)) {
      const name = tableNameFromSql(d.sql);
      if (name && !tables[name]) tables[name] = tableFromColumns(d.columns);
    }
  }
  return tables;
}

/** A ClickHouse resolver: the hand-written top destinations, else rows from the columns
 *  of the ClickHouse pipeline whose SQL was asked. */
export function sandboxClickHouseFor(pipelines: readonly SandboxPipeline[]): (sql: string) => Iterable<Record<string, unknown>> | null {
  const specs = pipelines.filter((x) => x.source.kind === 'clickhouse').flatMap(datasetsOf);
  return (sql) => {
    if (/\bsearches\b/i.test(sql)) return sandboxTopDests();
    const d = specs.find((s) => s.sql.trim() === sql.trim());
    return d ? rowsFromColumns(d.columns) : null;
  };
}

export async function startSandbox(opts: {
  pipelines: readonly SandboxPipeline[]; yespoApiKey: string; yespoContacts?: number; projects?: number;
}): Promise<Sandbox> {
  const yespoGroups = opts.pipelines.filter((p) => p.source.kind === 'yespo')
    .map((p) => p.config.groupId).filter((g): g is string => typeof g === 'string');
  const bq = await startBigQueryEmulator({ tables: sandboxTablesFor(opts.pipelines, { projects: opts.projects }) });
  const ch = await startClickHouseFake({ resolve: sandboxClickHouseFor(opts.pipelines) });
  const yespo = await startYespoFake({
    groups: Object.fromEntries(yespoGroups.map((g, i) => [g, { apiKey: opts.yespoApiKey, contacts: opts.yespoContacts ?? 1_200 + i * 850 }])),
  });
  return {
    env: { SANDBOX_BIGQUERY_URL: bq.url, SANDBOX_CLICKHOUSE_URL: ch.url, SANDBOX_YESPO_URL: yespo.url },
    async close() {
      await Promise.allSettled([bq.close(), ch.close(), yespo.close()]);
    },
  };
}
