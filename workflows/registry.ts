import type { PipelineSeed } from '../db/pipelines';
import { createRegistry, type PipelineDef, type Registry, type SourceSpec, type WorkflowDef } from './engine/define';

/**
 * What a list of pipeline definitions gives the rest of the platform: the workflows the
 * worker can run, the seeds `migrate` inserts, and the source of each pipeline. Tests
 * build one from the shipped list plus their own pipelines; nothing else needs editing.
 */
export interface Pipelines {
  list: readonly PipelineDef[];
  /** Workflows by id (one workflow may serve several pipelines), plus any extra ones. */
  registry: Registry;
  seeds: PipelineSeed[];
  /** The source a pipeline row reads with its current config; null for an unknown one. */
  sourceOf(row: { id: string; workflow: string; config: Record<string, unknown> }): { credential: string; kind: SourceSpec['kind'] } | null;
}

export function createPipelines(list: readonly PipelineDef[], extraWorkflows: readonly WorkflowDef[] = []): Pipelines {
  const byId = new Map<string, PipelineDef>();
  const workflows = new Map<string, WorkflowDef>();
  for (const p of list) {
    if (byId.has(p.id)) throw new Error(`duplicate pipeline id ${p.id}`);
    byId.set(p.id, p);
    const seen = workflows.get(p.workflow.id);
    if (seen && seen !== p.workflow) throw new Error(`two different workflows share the id ${p.workflow.id}`);
    workflows.set(p.workflow.id, p.workflow);
  }
  const specOf = (row: { id: string; workflow: string }) =>
    byId.get(row.id)?.source ?? list.find((p) => p.workflow.id === row.workflow)?.source;
  return {
    list,
    registry: createRegistry([...workflows.values(), ...extraWorkflows]),
    seeds: list.map((p) => ({
      id: p.id, workflow: p.workflow.id, description: p.description, cron: p.cron, timezone: p.timezone,
      config: p.config, concurrency: p.concurrency, catchup: p.catchup,
    })),
    sourceOf(row) {
      const spec = specOf(row);
      const credential = spec?.credential(row.config);
      return spec && credential ? { credential, kind: spec.kind } : null;
    },
  };
}
