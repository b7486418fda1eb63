import type { z } from 'zod';
import { STEP_KEY, type StepDef } from '../../steps/define';
import type { SourceKind } from '../../steps/services';

/**
 * Declarations only: a workflow is an ordered chain of steps (steps/define.ts). Nothing
 * here touches a client.
 */

export interface WorkflowDef<S = unknown, Cfg = unknown> {
  id: string;
  description?: string;
  /** Validates etl_pipelines.config before a run starts. */
  config?: z.ZodType<Cfg>;
  steps: readonly StepDef<S, Cfg, unknown, unknown>[];
}


export function defineWorkflow<S = unknown, Cfg = unknown>(def: WorkflowDef<S, Cfg>): WorkflowDef<S, Cfg> {
  if (!STEP_KEY.test(def.id.replace(/\./g, '-'))) throw new Error(`invalid workflow id ${JSON.stringify(def.id)}`);
  if (def.steps.length === 0) throw new Error(`workflow ${def.id} has no steps`);
  const keys = new Set<string>();
  for (const s of def.steps) {
    if (keys.has(s.key)) throw new Error(`workflow ${def.id}: duplicate step key ${s.key}`);
    keys.add(s.key);
  }
  if (def.steps[0].streams) throw new Error(`workflow ${def.id}: the first step has no step before it to stream from`);
  // Only the first group may stream: a later group's streaming jobs would have no
  // children in the flow and run (and find nothing to do) before their group could start.
  def.steps.forEach((s, i) => {
    if (s.streams && groupHead(def.steps, i) !== 0) throw new Error(`workflow ${def.id}: step ${s.key} streams in a group after the first (not supported)`);
  });
  return def;
}

/** The position of the head of the step's group: the nearest step at or before it that
 *  does not stream. Steps from there on may run at the same time (ARCHITECTURE.md). */
export function groupHead(steps: readonly Pick<StepDef, 'streams'>[], index: number): number {
  let i = index;
  while (i > 0 && steps[i].streams) i--;
  return i;
}

export type Registry = ReadonlyMap<string, WorkflowDef>;

export function createRegistry(workflows: readonly WorkflowDef[]): Registry {
  const map = new Map<string, WorkflowDef>();
  for (const w of workflows) {
    if (map.has(w.id)) throw new Error(`duplicate workflow id ${w.id}`);
    map.set(w.id, w);
  }
  return map;
}

/** Where a pipeline's data comes from: the kind of source and the credential it reads
 *  with, named from its (editable) config. */
export interface SourceSpec {
  kind: SourceKind | 'yespo';
  /** The credential name (e.g. `bigquery`, `yespo/OVAGO`) for a pipeline's current config. */
  credential(config: Record<string, unknown>): string | null;
}

/**
 * One pipeline: the whole of what a file in workflows/ declares. The workflow runs it,
 * the seed (id, description, cron, zone, config) goes into etl_pipelines once (disabled,
 * never overwriting an operator's edits), and the source says which credential and kind
 * of source it reads (for the sandbox label and the sandbox data).
 */
export interface PipelineDef<S = unknown, Cfg = unknown> {
  id: string;
  description: string;
  cron: string;
  timezone: string;
  workflow: WorkflowDef<S, Cfg>;
  source: SourceSpec;
  /** The seeded config: JSON, validated by the workflow's config schema at definition. */
  config: Record<string, unknown>;
  concurrency?: 'forbid' | 'allow';
  catchup?: 'none' | 'latest' | 'all';
}

const PIPELINE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function definePipeline<S, Cfg>(def: PipelineDef<S, Cfg>): PipelineDef<S, Cfg> {
  if (!PIPELINE_ID.test(def.id)) throw new Error(`invalid pipeline id ${JSON.stringify(def.id)}`);
  const parsed = def.workflow.config?.safeParse(def.config);
  if (parsed && !parsed.success) {
    const i = parsed.error.issues[0];
    throw new Error(`pipeline ${def.id}: seeded config is invalid at ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return def;
}

/** The common case: the credential is named by the config's `credential` field. */
export function credentialField(kind: SourceSpec['kind']): SourceSpec {
  return { kind, credential: (c) => (typeof c.credential === 'string' ? c.credential : null) };
}
