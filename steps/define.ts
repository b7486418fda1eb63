import type { z } from 'zod';
import type { Logger } from '../lib/logger';

/**
 * The step contract. A step is a key, a retry policy, a timeout, an input and output
 * schema and a function; it gets its clients and an AbortSignal through its context.
 * Declarations only: nothing here touches a client.
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

/** Event types the drilldown knows (SPEC §14); a step may use others. */
export type StepEventType = 'page' | 'retry' | 'rate_limited' | 'staged' | 'check' | 'published';

/** Live progress of a running step; `rowsDone` also follows `reportRows`. */
export interface StepProgress {
  rowsDone?: number;
  /** When the source knows it (BigQuery's totalRows, a staged input's size). */
  rowsTotal?: number;
  pagesDone?: number;
}

export interface StepContext<S = unknown, Cfg = unknown, I = unknown> {
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
  /** The previous step's checkpointed output (undefined for the first step), parsed by
   *  the step's `input` schema when it declares one. */
  input: I;
  /** Outputs of every step that succeeded before this one, by key. */
  outputs: Record<string, unknown>;
  /** The in-progress checkpoint saved by an earlier attempt of this step (e.g. a page cursor). */
  checkpoint: unknown;
  /** Durably saves an in-progress checkpoint; a later attempt starts from it. */
  saveCheckpoint(value: unknown): Promise<void>;
  /** Rows read and produced, shown in the drilldown. */
  reportRows(rows: { in?: number; out?: number }): void;
  /** Adds an event to this attempt's log (at most 200 kept). Buffered: cheap to call per
   *  page, never a database round trip of its own. `data` is small plain JSON. */
  event(type: StepEventType | (string & {}), message: string, data?: Record<string, unknown>): void;
  /** Live progress for the page (sent at most once a second; not stored). */
  progress(p: StepProgress): void;
  services: S;
  log: Logger;
}

export interface StepDef<S = unknown, Cfg = unknown, I = unknown, O = unknown> {
  key: string;
  retry: RetryPolicy;
  timeoutMs: number;
  /** Parses the previous step's stored output before `run` sees it: a mismatch fails the
   *  step for good (the stored output will not change by retrying). */
  input?: z.ZodType<I>;
  output?: z.ZodType<O>;
  /** Starts while the step before it still runs and consumes its staged chunks as they
   *  land (steps/stream.ts; workflows/engine/ARCHITECTURE.md "Overlapped steps"). Its
   *  `input` is then undefined until the step before has succeeded. */
  streams?: boolean;
  run(ctx: StepContext<S, Cfg, I>): Promise<O>;
}

/** Keys end up in BullMQ job ids, which may not contain ':'. */
export const STEP_KEY = /^[a-z][a-z0-9_-]{0,62}$/;

export function defineStep<S = unknown, Cfg = unknown, I = unknown, O = unknown>(def: {
  key: string;
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  input?: z.ZodType<I>;
  output?: z.ZodType<O>;
  streams?: boolean;
  run(ctx: StepContext<S, Cfg, I>): Promise<O>;
}): StepDef<S, Cfg, I, O> {
  if (!STEP_KEY.test(def.key)) throw new Error(`invalid step key ${JSON.stringify(def.key)}`);
  const retry = { ...DEFAULT_RETRY, ...def.retry };
  if (!(retry.attempts >= 1 && Number.isInteger(retry.attempts))) throw new Error(`step ${def.key}: attempts must be an integer >= 1`);
  return { ...def, retry, timeoutMs: def.timeoutMs ?? DEFAULT_TIMEOUT_MS };
}
