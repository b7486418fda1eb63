import type { z } from 'zod';
import { STEP_KEY, type StepDef } from '../../steps/define';

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
  return def;
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
