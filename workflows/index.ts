import type { PipelineSeed } from '../db/pipelines';
import { bqProjects, bqProjectsConfig } from './bq-projects';
import { bqReference, bqReferenceConfig } from './bq-reference';
import { chTopDests, chTopDestsConfig } from './ch-top-dests';
import { createRegistry, type Registry, type WorkflowDef } from './engine/define';
import { yespoConfig, yespoContacts } from './yespo-contacts';

/**
 * The registry: every workflow this build can run, and the five pipelines seeded into
 * etl_pipelines (disabled until credentials exist). SQL, tables, group ids and cron live
 * in the seeded config, editable in Postgres without a code change.
 */
export const workflows: WorkflowDef[] = [bqReference, bqProjects, chTopDests, yespoContacts];

export function defaultRegistry(extra: readonly WorkflowDef[] = []): Registry {
  return createRegistry([...workflows, ...extra]);
}

export const pipelineSeeds: PipelineSeed[] = [
  {
    id: 'bq.reference', workflow: 'bq-reference', description: 'BigQuery reference tables → Redis cache',
    cron: '0 3 * * *', timezone: 'Europe/Kyiv', config: bqReferenceConfig,
  },
  {
    id: 'bq.projects', workflow: 'bq-projects', description: 'BigQuery projects → Postgres + Redis cache',
    cron: '15 * * * *', timezone: 'Europe/Kyiv', config: bqProjectsConfig,
  },
  {
    id: 'ch.top_dests', workflow: 'ch-top-dests', description: 'ClickHouse top destinations → Redis cache',
    cron: '*/30 * * * *', timezone: 'Europe/Kyiv', config: chTopDestsConfig,
  },
  {
    id: 'yespo.OVAGO', workflow: 'yespo-contacts', description: 'Yespo contacts of the OVAGO group → Redis cache',
    cron: '0 4 * * *', timezone: 'Europe/Kyiv', config: yespoConfig('OVAGO', '1001'),
  },
  {
    id: 'yespo.brand_b', workflow: 'yespo-contacts', description: 'Yespo contacts of brand B → Redis cache',
    cron: '30 4 * * *', timezone: 'Europe/Kyiv', config: yespoConfig('brand_b', '2002'),
  },
];

/** Which credential (and kind of source) a pipeline reads with, from its config. */
export function sourceOf(p: { workflow: string; config: Record<string, unknown> }): { credential: string; kind: 'bigquery' | 'clickhouse' | 'yespo' } | null {
  const c = p.config;
  if (p.workflow === 'yespo-contacts' && typeof c.brand === 'string') return { credential: `yespo/${c.brand}`, kind: 'yespo' };
  if (typeof c.credential !== 'string') return null;
  if (p.workflow === 'ch-top-dests') return { credential: c.credential, kind: 'clickhouse' };
  if (p.workflow.startsWith('bq-')) return { credential: c.credential, kind: 'bigquery' };
  return null;
}
