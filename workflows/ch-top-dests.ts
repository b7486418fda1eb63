import { queryConfigSchema, queryFetchStep, queryTransformStep, queryWriteStep } from '../steps/query-steps';
import { credentialField, definePipeline, defineWorkflow } from './engine/define';

/** ClickHouse top destinations: an aggregate query, published as one JSON array (ordered)
 *  at `cache:ch:top_dests`. The SQL runs on old and new ClickHouse alike. */
export const chTopDests = definePipeline({
  id: 'ch.top_dests',
  description: 'ClickHouse top destinations → Redis cache',
  cron: '*/30 * * * *',
  timezone: 'Europe/Kyiv',
  source: credentialField('clickhouse'),
  workflow: defineWorkflow({
    id: 'ch-top-dests',
    config: queryConfigSchema,
    steps: [queryFetchStep('clickhouse'), queryTransformStep, queryWriteStep],
  }),
  config: {
    credential: 'clickhouse',
    pageSize: 10_000,
    datasets: [{
      name: 'top_dests', dataset: 'ch:top_dests', shape: 'json',
      sql: `SELECT destination, count() AS searches, uniq(user_id) AS users
FROM analytics.searches
WHERE event_date >= today() - 30
GROUP BY destination
ORDER BY searches DESC
LIMIT 100`,
      columns: { destination: 'string', searches: 'integer', users: 'integer' },
    }],
    badRows: { max: 0 },
    check: { allowEmpty: false, minFractionOfLast: 0.5 },
  },
});
