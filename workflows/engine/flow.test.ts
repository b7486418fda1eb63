import type { FlowJob } from 'bullmq';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RunState } from '../../db/runs';
import { defineStep, type StepDef } from '../../steps/define';
import { stepsToRun } from './engine-context';
import { backoffDelay, buildFlow, rootJobId, stepJobId, type RunJobData, type StepJobData } from './flow';

/** Pure tests of flow building: each block is one thing flow.ts says must stay true. */

const RUN = '3f1c2a9e-4b7d-4c1e-9a2b-8d6e5f4a3b21';
const step = (key: string, retry?: Partial<StepDef['retry']>) => defineStep({ key, retry, run: () => Promise.resolve(null) });
const STEPS = [step('fetch', { attempts: 5, baseMs: 200, maxMs: 5_000 }), step('transform'), step('write', { attempts: 1 })];
const build = (generation = 0, steps: readonly StepDef[] = STEPS) =>
  buildFlow({ queueName: 'q', runId: RUN, generation, pipelineId: 'p1', workflow: 'wf', steps });

/** The jobs of a flow from the root down: root, last step, …, first step. */
function chain(flow: FlowJob): FlowJob[] {
  const out: FlowJob[] = [];
  for (let j: FlowJob | undefined = flow; j; j = j.children?.[0]) {
    expect(j.children?.length ?? 0).toBeLessThanOrEqual(1);
    out.push(j);
  }
  return out;
}
const steps = (flow: FlowJob) => chain(flow).slice(1);
const ids = (flow: FlowJob) => chain(flow).map((j) => j.opts!.jobId!);

describe('buildFlow: one run is one chain', () => {
  it('has the run as root, its only child the last step, and the first step as the deepest leaf', () => {
    const flow = build();
    expect(flow.name).toBe('run');
    expect(flow.data as RunJobData).toEqual({ runId: RUN, generation: 0, pipelineId: 'p1' });
    expect(chain(flow).map((j) => j.name)).toEqual(['run', 'step', 'step', 'step']);
    // Deepest first: BullMQ runs leaves first, so fetch must be at the bottom.
    expect(steps(flow).map((j) => (j.data as StepJobData).key)).toEqual(['write', 'transform', 'fetch']);
    expect(steps(flow).at(-1)!.children).toBeUndefined();
  });

  it('puts every job on the given queue', () => {
    expect(chain(build()).every((j) => j.queueName === 'q')).toBe(true);
  });

  it('gives a run with no step left a root without children', () => {
    const flow = build(2, []);
    expect(flow.children).toBeUndefined();
    expect(flow.opts!.jobId).toBe(rootJobId(RUN, 2));
  });
});

describe('buildFlow: job ids', () => {
  it('names the root and each step by run, generation and key', () => {
    expect(ids(build(3))).toEqual([`${RUN}.g3`, `${RUN}.g3.write`, `${RUN}.g3.transform`, `${RUN}.g3.fetch`]);
    expect(rootJobId(RUN, 3)).toBe(`${RUN}.g3`);
    expect(stepJobId(RUN, 3, 'fetch')).toBe(`${RUN}.g3.fetch`);
  });

  it('never repeats an id within a flow or across generations', () => {
    const all = [0, 1, 2, 10, 11].flatMap((g) => ids(build(g)));
    expect(new Set(all).size).toBe(all.length);
  });

  it('uses ids BullMQ accepts: no ":" and never integer-like', () => {
    for (const id of ids(build(7))) {
      expect(id).not.toContain(':');
      expect(/^\d+$/.test(id)).toBe(false);
    }
  });
});

describe('buildFlow: step jobs', () => {
  it('carries what the runner and the backoff strategy need, and the step\'s attempts', () => {
    const fetch = steps(build(4)).at(-1)!;
    expect(fetch.data as StepJobData).toEqual({
      runId: RUN, generation: 4, pipelineId: 'p1', workflow: 'wf', key: 'fetch', retry: { baseMs: 200, maxMs: 5_000 },
    });
    expect(fetch.opts).toMatchObject({ attempts: 5, backoff: { type: 'etl' } });
    expect(steps(build()).map((j) => j.opts!.attempts)).toEqual([1, 3, 5]);
  });

  it('fails parents on a step\'s final failure, so a failed run\'s jobs are trimmed', () => {
    for (const j of steps(build())) expect(j.opts!.failParentOnFailure).toBe(true);
  });

  it('keeps jobs by age and count, and never removeOnFail: true (the parent would proceed)', () => {
    for (const j of chain(build())) {
      expect(j.opts!.removeOnFail).not.toBe(true);
      expect(j.opts!.removeOnFail).toEqual({ age: expect.any(Number), count: expect.any(Number) });
      expect(j.opts!.removeOnComplete).toEqual({ age: expect.any(Number), count: expect.any(Number) });
    }
    // Failed jobs are kept longer than completed ones: they are what an operator inspects.
    const o = build().opts!;
    expect((o.removeOnFail as { age: number }).age).toBeGreaterThan((o.removeOnComplete as { age: number }).age);
  });
});

describe('a rebuilt flow (retry, resume, reconciler)', () => {
  const state = (statuses: Record<string, RunState['steps'][number]['status']>) => ({
    steps: Object.entries(statuses).map(([key, status], position) => ({ key, status, position })),
  }) as unknown as RunState;

  it('contains only the steps not yet succeeded, in workflow order, on the new generation', () => {
    const todo = stepsToRun(state({ fetch: 'succeeded', transform: 'failed', write: 'pending' }));
    const flow = build(1, STEPS.filter((s) => todo.has(s.key)));
    expect(steps(flow).map((j) => (j.data as StepJobData).key)).toEqual(['write', 'transform']);
    expect(ids(flow).every((id) => id.startsWith(`${RUN}.g1`))).toBe(true);
    expect(ids(flow).some((id) => ids(build(0)).includes(id))).toBe(false);
  });

  it('leaves out skipped steps too, and is empty when every step succeeded', () => {
    expect([...stepsToRun(state({ fetch: 'skipped', transform: 'cancelled', write: 'running' }))]).toEqual(['transform', 'write']);
    expect(stepsToRun(state({ fetch: 'succeeded', transform: 'succeeded' })).size).toBe(0);
  });
});

describe('backoffDelay', () => {
  afterEach(() => vi.restoreAllMocks());
  const retry = { baseMs: 1_000, maxMs: 8_000 };

  it('doubles per attempt with equal jitter: between half the cap and the cap', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, retry))).toEqual([500, 1_000, 2_000, 4_000]);
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, retry))).toEqual([1_000, 2_000, 4_000, 8_000]);
  });

  it('never exceeds maxMs', () => {
    for (let n = 1; n < 40; n++) expect(backoffDelay(n, retry)).toBeLessThanOrEqual(retry.maxMs);
  });

  it('uses the error\'s Retry-After, capped at 15 minutes', () => {
    expect(backoffDelay(1, retry, { retryAfterMs: 42_000 })).toBe(42_000);
    expect(backoffDelay(1, retry, { retryAfterMs: 0 })).toBe(0);
    expect(backoffDelay(1, retry, { retryAfterMs: 3_600_000 })).toBe(15 * 60_000);
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect(backoffDelay(1, retry, { retryAfterMs: -1 })).toBe(500);
  });
});

describe('buildFlow: streaming steps run beside the step they stream from', () => {
  const streaming = (key: string) => defineStep({ key, streams: true, run: () => Promise.resolve(null) });
  const keys = (jobs: FlowJob[] | undefined) => (jobs ?? []).map((j) => (j.data as StepJobData).key);

  it('makes a group of a step and the streaming steps after it: all children of the root', () => {
    const flow = build(0, [step('fetch'), streaming('transform'), streaming('write')]);
    expect(keys(flow.children)).toEqual(['fetch', 'transform', 'write']);
    for (const j of flow.children!) expect(j.children).toBeUndefined();
  });

  it('hangs a group under the next group’s head, so the next group waits for all of it', () => {
    const flow = build(0, [step('extract'), step('fetch'), streaming('transform'), step('publish'), streaming('notify')]);
    expect(keys(flow.children)).toEqual(['publish', 'notify']);
    const publish = flow.children![0];
    expect(flow.children![1].children).toBeUndefined();
    expect(keys(publish.children)).toEqual(['fetch', 'transform']);
    expect(keys(publish.children![0].children)).toEqual(['extract']);
    expect(publish.children![1].children).toBeUndefined();
  });

  it('refuses a workflow whose first step streams (there is nothing before it)', async () => {
    const { defineWorkflow } = await import('./define');
    expect(() => defineWorkflow({ id: 'w', steps: [streaming('a')] })).toThrow(/first step has no step before it/);
    expect(() => defineWorkflow({ id: 'w', steps: [step('a'), step('b'), streaming('c')] })).toThrow(/streams in a group after the first/);
  });

  it('starts a rebuilt flow whose first remaining step streams as a group head', () => {
    const flow = build(1, [streaming('transform'), streaming('write')]);
    expect(keys(flow.children)).toEqual(['transform', 'write']);
  });
});

describe('groupHead', () => {
  it('is the nearest step at or before that does not stream', async () => {
    const { groupHead } = await import('./define');
    const s = [{}, { streams: true }, { streams: true }, {}, { streams: true }];
    expect([0, 1, 2, 3, 4].map((i) => groupHead(s, i))).toEqual([0, 0, 0, 3, 3]);
  });
});
