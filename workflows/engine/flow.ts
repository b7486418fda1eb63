import type { FlowJob } from 'bullmq';
import type { StepDef } from '../../steps/define';

/**
 * One run = one BullMQ flow: the root job is the run, its only child the last step, whose
 * child is the step before, down to the first step (the deepest leaf runs first). Steps
 * that stream (steps/define.ts) are siblings of the step they stream from instead.
 * Every job id carries the run's flow generation, so a rebuilt flow never reuses an id
 * of an older one (BullMQ attaches or strands jobs that reuse ids).
 */

export interface StepJobData {
  runId: string;
  generation: number;
  pipelineId: string;
  workflow: string;
  key: string;
  retry: { baseMs: number; maxMs: number };
}

export interface RunJobData {
  runId: string;
  generation: number;
  pipelineId: string;
}

export const rootJobId = (runId: string, generation: number) => `${runId}.g${generation}`;
export const stepJobId = (runId: string, generation: number, key: string) => `${runId}.g${generation}.${key}`;

const KEEP_COMPLETED = { age: 3_600, count: 2_000 };
// Never removeOnFail: true on a step: BullMQ would then let the parent proceed.
const KEEP_FAILED = { age: 14 * 86_400, count: 10_000 };

export function buildFlow(a: {
  queueName: string;
  runId: string;
  generation: number;
  pipelineId: string;
  workflow: string;
  steps: readonly StepDef[];
}): FlowJob {
  // Groups: a step and the streaming steps after it run together (ARCHITECTURE.md
  // "Overlapped steps"). Every job of a group is a child of the next group's head (the
  // last group's: of the root), so BullMQ releases a group's jobs at the same time.
  const groups: StepDef[][] = [];
  for (const step of a.steps) {
    if (step.streams && groups.length) groups[groups.length - 1].push(step);
    else groups.push([step]);
  }
  let children: FlowJob[] | undefined;
  for (const group of groups) {
    const jobs = group.map((step, i) => stepJob(a, step, i === 0 ? children : undefined));
    children = jobs;
  }
  const data: RunJobData = { runId: a.runId, generation: a.generation, pipelineId: a.pipelineId };
  return {
    name: 'run',
    queueName: a.queueName,
    data,
    opts: { jobId: rootJobId(a.runId, a.generation), removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
    children,
  };
}

function stepJob(
  a: { queueName: string; runId: string; generation: number; pipelineId: string; workflow: string },
  step: StepDef, children: FlowJob[] | undefined,
): FlowJob {
  const data: StepJobData = {
    runId: a.runId, generation: a.generation, pipelineId: a.pipelineId, workflow: a.workflow, key: step.key,
    retry: { baseMs: step.retry.baseMs, maxMs: step.retry.maxMs },
  };
  return {
    name: 'step',
    queueName: a.queueName,
    data,
    opts: {
      jobId: stepJobId(a.runId, a.generation, step.key),
      attempts: step.retry.attempts,
      backoff: { type: 'etl' },
      // A step that fails for good fails its parents up to the root, so a failed run's
      // jobs end in the failed set and are trimmed by KEEP_FAILED instead of a root
      // waiting for its children forever. Retries rebuild the flow; they never retry
      // these jobs in place.
      failParentOnFailure: true,
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    },
    children,
  };
}

/** Exponential backoff with "equal" jitter (half fixed, half random), or the server's Retry-After when it gave one. */
export function backoffDelay(attemptsMade: number, retry: { baseMs: number; maxMs: number }, err?: unknown): number {
  // Chosen (and logged) by settle.ts when the attempt failed: use exactly that delay.
  const planned = (err as { plannedDelayMs?: unknown } | undefined)?.plannedDelayMs;
  if (typeof planned === 'number' && planned >= 0) return planned;
  const retryAfter = (err as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
  if (typeof retryAfter === 'number' && retryAfter >= 0) return Math.min(retryAfter, 15 * 60_000);
  const cap = Math.min(retry.maxMs, retry.baseMs * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}
