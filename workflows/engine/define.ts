import type { z } from 'zod';
import type { Logger } from '../../lib/logger';

/**
 * Declarations only: a workflow is an ordered chain of steps; a step is a key, a retry
 * policy, a timeout, an output schema and a function. Nothing here touches a client.
 */

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  /** Exponential backoff with jitter: a delay in [cap/2, cap], cap = min(maxMs, baseMs * 2^(n-1)). */
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseMs: 1_000, maxMs: 60_000 };
export const DEFAULT_TIMEOUT_MS = 15 * 60_000;

export interface StepContext<S = unknown, Cfg = Record<string, unknown>> {
  runId: string;
  pipelineId: string;
  stepKey: string;
  /** 1 for the first execution of this step in this run, counting every retry and resume. */
  attempt: number;
  /** Aborted when the run is cancelled, the step times out, or the worker shuts down. */
  signal: AbortSignal;
  /** The pipeline's config (etl_pipelines.config), validated by the workflow's schema. */
  config: Cfg;
  /** Params of a manual trigger. */
  params: Record<string, unknown>;
  /** The previous step's checkpointed output (undefined for the first step). */
  input: unknown;
  /** Outputs of every step that succeeded before this one, by key. */
  outputs: Record<string, unknown>;
  /** The in-progress checkpoint saved by an earlier attempt of this step (e.g. a page cursor). */
  checkpoint: unknown;
  /** Durably saves an in-progress checkpoint; a later attempt starts from it. */
  saveCheckpoint(value: unknown): Promise<void>;
  /** Rows read and produced, shown in the drilldown. */
  reportRows(rows: { in?: number; out?: number }): void;
  services: S;
  log: Logger;
}

export interface StepDef<S = any, Cfg = any, O = unknown> {
  key: string;
  retry: RetryPolicy;
  timeoutMs: number;
  output?: z.ZodType<O>;
  run(ctx: StepContext<S, Cfg>): Promise<O>;
}

export interface WorkflowDef<S = any, Cfg = any> {
  id: string;
  description?: string;
  /** Validates etl_pipelines.config before a run starts. */
  config?: z.ZodType<Cfg>;
  steps: readonly StepDef<S, Cfg, any>[];
}

const KEY = /^[a-z][a-z0-9_-]{0,62}$/;

export function defineStep<S = any, Cfg = any, O = unknown>(def: {
  key: string;
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  output?: z.ZodType<O>;
  run(ctx: StepContext<S, Cfg>): Promise<O>;
}): StepDef<S, Cfg, O> {
  // Keys end up in BullMQ job ids, which may not contain ':'.
  if (!KEY.test(def.key)) throw new Error(`invalid step key ${JSON.stringify(def.key)}`);
  const retry = { ...DEFAULT_RETRY, ...def.retry };
  if (!(retry.attempts >= 1 && Number.isInteger(retry.attempts))) throw new Error(`step ${def.key}: attempts must be an integer >= 1`);
  return { ...def, retry, timeoutMs: def.timeoutMs ?? DEFAULT_TIMEOUT_MS };
}

export function defineWorkflow<S = any, Cfg = any>(def: WorkflowDef<S, Cfg>): WorkflowDef<S, Cfg> {
  if (!KEY.test(def.id.replace(/\./g, '-'))) throw new Error(`invalid workflow id ${JSON.stringify(def.id)}`);
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
