import { startBigQueryEmulator } from './bigquery-emulator';
import { startClickHouseFake } from './clickhouse-fake';
import { sandboxBigQueryTables, sandboxTopDests } from './data';
import { startYespoFake } from './yespo-fake';

/**
 * The local stand-ins for BigQuery, ClickHouse and Yespo that `npm start` runs on a
 * machine with no credentials, so every pipeline works end to end on sandbox data.
 */
export interface Sandbox {
  env: { SANDBOX_BIGQUERY_URL: string; SANDBOX_CLICKHOUSE_URL: string; SANDBOX_YESPO_URL: string };
  close(): Promise<void>;
}

export async function startSandbox(opts: { yespoApiKey: string; yespoGroups: string[]; yespoContacts?: number; projects?: number }): Promise<Sandbox> {
  const bq = await startBigQueryEmulator({ tables: sandboxBigQueryTables({ projects: opts.projects }) });
  const ch = await startClickHouseFake({ resolve: (sql) => (/\bsearches\b/i.test(sql) ? sandboxTopDests() : null) });
  const yespo = await startYespoFake({
    groups: Object.fromEntries(opts.yespoGroups.map((g, i) => [g, { apiKey: opts.yespoApiKey, contacts: opts.yespoContacts ?? 1_200 + i * 850 }])),
  });
  return {
    env: { SANDBOX_BIGQUERY_URL: bq.url, SANDBOX_CLICKHOUSE_URL: ch.url, SANDBOX_YESPO_URL: yespo.url },
    async close() {
      await Promise.allSettled([bq.close(), ch.close(), yespo.close()]);
    },
  };
}
