import { bqProjects } from './bq-projects';
import { bqReference } from './bq-reference';
import { chTopDests } from './ch-top-dests';
import type { PipelineDef, Registry, WorkflowDef } from './engine/define';
import { createPipelines, type Pipelines } from './registry';
import { yespoBrandB } from './yespo-brand-b';
import { yespoOvago } from './yespo-ovago';

/**
 * The registry: every pipeline this build ships, one file each, seeded into etl_pipelines
 * (disabled until credentials exist). A new pipeline is a new file and one line here.
 */
export const pipelines: readonly PipelineDef[] = [
  bqReference,
  bqProjects,
  chTopDests,
  yespoOvago,
  yespoBrandB,
];

export const shipped = createPipelines(pipelines);
export const pipelineSeeds = shipped.seeds;
export const sourceOf: Pipelines['sourceOf'] = (row) => shipped.sourceOf(row);

/** The shipped workflows, plus extra ones (tests and benchmarks add their own). */
export function defaultRegistry(extra: readonly WorkflowDef[] = []): Registry {
  return extra.length ? createPipelines(pipelines, extra).registry : shipped.registry;
}
