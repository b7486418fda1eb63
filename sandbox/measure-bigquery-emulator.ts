// Manual measurement, not a test: how fast the real @google-cloud/bigquery
// client reads narrow rows from the sandbox emulator with manual paging.
// Run: npx tsx sandbox/measure-bigquery-emulator.ts [rows] [maxResults]
import { BigQuery } from '@google-cloud/bigquery';
import { startBigQueryEmulator } from './bigquery-emulator.js';
import { noopAuthClient } from '../steps/sources/bigquery-auth.js';

const total = Number(process.argv[2] ?? 1_000_000);
const maxResults = Number(process.argv[3] ?? 10_000);

const emu = await startBigQueryEmulator({
  tables: {
    narrow: {
      schema: [
        { name: 'id', type: 'INTEGER' },
        { name: 'code', type: 'STRING' },
      ],
      rowCount: total,
      row: (i) => [i, `c${i % 1000}`],
    },
  },
});
try {
  const bq = new BigQuery({ projectId: 'p', apiEndpoint: emu.url, authClient: noopAuthClient('p') });
  const started = performance.now();
  const [job] = await bq.createQueryJob({ query: 'SELECT id, code FROM `p.ds.narrow`' });
  let pageToken: string | undefined;
  let rows = 0;
  let peakRss = 0;
  do {
    const [page, next] = await job.getQueryResults({ maxResults, pageToken, autoPaginate: false });
    rows += page.length;
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    pageToken = next?.pageToken ?? undefined;
  } while (pageToken);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${rows} rows in ${seconds.toFixed(2)} s = ${Math.round(rows / seconds)} rows/s ` +
      `(maxResults ${maxResults}, ${emu.requests.length} requests, peak RSS ${Math.round(peakRss / 2 ** 20)} MB)`,
  );
} finally {
  await emu.close();
}
