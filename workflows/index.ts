import type { PipelineSeed } from '../db/pipelines';
import { createRegistry, type Registry, type WorkflowDef } from './engine/define';

/**
 * The registry: every workflow this build can run, and the five pipelines seeded into
 * etl_pipelines (disabled until credentials exist). SQL, tables, group ids and cron live
 * in the seeded config, editable in Postgres without a code change.
 */
export const workflows: WorkflowDef[] = [];

export function defaultRegistry(extra: readonly WorkflowDef[] = []): Registry {
  return createRegistry([...workflows, ...extra]);
}

export const pipelineSeeds: PipelineSeed[] = [
  {
    id: 'bq.reference', workflow: 'bq-reference', description: 'BigQuery reference tables → Redis cache',
    cron: '0 3 * * *', timezone: 'Europe/Kyiv', config: {},
  },
  {
    id: 'bq.projects', workflow: 'bq-projects', description: 'BigQuery projects → Postgres + Redis cache',
    cron: '15 * * * *', timezone: 'Europe/Kyiv', config: {},
  },
  {
    id: 'ch.top_dests', workflow: 'ch-top-dests', description: 'ClickHouse top destinations → Redis cache',
    cron: '*/30 * * * *', timezone: 'Europe/Kyiv', config: {},
  },
  {
    id: 'yespo.OVAGO', workflow: 'yespo-contacts', description: 'Yespo contacts of the OVAGO group → Redis cache',
    cron: '0 4 * * *', timezone: 'Europe/Kyiv', config: {},
  },
  {
    id: 'yespo.brand_b', workflow: 'yespo-contacts', description: 'Yespo contacts of brand B → Redis cache',
    cron: '30 4 * * *', timezone: 'Europe/Kyiv', config: {},
  },
];
