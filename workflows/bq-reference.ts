import { queryConfigSchema, queryFetchStep, queryTransformStep, queryWriteStep } from '../steps/query-steps';
import { credentialField, definePipeline, defineWorkflow } from './engine/define';

/** BigQuery reference tables (bdi-chat-va.n8n_oss.*), full-table loads, one Redis hash
 *  per table. Which tables, their SQL and columns are pipeline config. */
export const bqReference = definePipeline({
  id: 'bq.reference',
  description: 'BigQuery reference tables → Redis cache',
  cron: '0 3 * * *',
  timezone: 'Europe/Kyiv',
  source: credentialField('bigquery'),
  workflow: defineWorkflow({
    id: 'bq-reference',
    config: queryConfigSchema,
    steps: [queryFetchStep('bigquery'), queryTransformStep, queryWriteStep],
  }),
  config: {
    credential: 'bigquery',
    projectId: 'bdi-chat-va',
    location: 'US',
    pageSize: 10_000,
    datasets: [
      {
        name: 'countries', dataset: 'bq:reference:countries', shape: 'hash', keyField: 'code',
        sql: 'SELECT code, name, region, currency FROM `bdi-chat-va.n8n_oss.countries`',
        columns: { code: 'string', name: 'string', region: 'string?', currency: 'string?' },
      },
      {
        name: 'airports', dataset: 'bq:reference:airports', shape: 'hash', keyField: 'iata',
        sql: 'SELECT iata, name, city, country_code, latitude, longitude FROM `bdi-chat-va.n8n_oss.airports`',
        columns: { iata: 'string', name: 'string', city: 'string?', country_code: 'string', latitude: 'number?', longitude: 'number?' },
      },
      {
        name: 'airlines', dataset: 'bq:reference:airlines', shape: 'hash', keyField: 'code',
        sql: 'SELECT code, name, alliance FROM `bdi-chat-va.n8n_oss.airlines`',
        columns: { code: 'string', name: 'string', alliance: 'string?' },
      },
    ],
    badRows: { max: 0 },
    check: { allowEmpty: false, minFractionOfLast: 0.5 },
  },
});
