import { queryConfigSchema, queryFetchStep, queryTransformStep, queryWriteStep } from '../steps/query-steps';
import { credentialField, definePipeline, defineWorkflow } from './engine/define';

/** BigQuery projects: upserted by project_id into Postgres `bq_projects` (no duplicates on
 *  re-run), then published as the Redis hash `cache:bq:projects`. */
const columns = {
  project_id: 'string', name: 'string', status: 'string?', owner_email: 'string?', budget_usd: 'number?',
  created_at: 'timestamp?', updated_at: 'timestamp?',
};

export const bqProjects = definePipeline({
  id: 'bq.projects',
  description: 'BigQuery projects → Postgres + Redis cache',
  cron: '15 * * * *',
  timezone: 'Europe/Kyiv',
  source: credentialField('bigquery'),
  workflow: defineWorkflow({
    id: 'bq-projects',
    config: queryConfigSchema,
    steps: [queryFetchStep('bigquery'), queryTransformStep, queryWriteStep],
  }),
  config: {
    credential: 'bigquery',
    projectId: 'bdi-chat-va',
    location: 'US',
    pageSize: 10_000,
    datasets: [{
      name: 'projects', dataset: 'bq:projects', shape: 'hash', keyField: 'project_id', columns,
      sql: 'SELECT project_id, name, status, owner_email, budget_usd, created_at, updated_at FROM `bdi-chat-va.n8n_oss.projects`',
    }],
    postgres: { dataset: 'projects', table: 'bq_projects', keyColumns: ['project_id'], columns: Object.keys(columns) },
    badRows: { max: 0 },
    check: { allowEmpty: false, minFractionOfLast: 0.5 },
  },
});
