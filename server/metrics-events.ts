import client from 'prom-client';
import type { SubscribeEvents } from './context';

/**
 * Step attempt durations, from the live events this process sees (a step's 'running'
 * to its 'succeeded'/'failed'). Returns the unsubscribe function.
 */
export function trackStepDurations(registry: client.Registry, subscribeEvents?: SubscribeEvents): (() => void) | undefined {
  // Every api process sees every event (Redis pub/sub), so in a cluster one process's histogram is the whole truth.
  const stepDuration = new client.Histogram({
    aggregator: 'first', name: 'etl_step_duration_seconds', help: 'Duration of step attempts seen by this process', labelNames: ['pipeline', 'step', 'outcome'],
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600], registers: [registry],
  });
  const started = new Map<string, number>();
  return subscribeEvents?.((data) => {
    const e = JSON.parse(data) as { type: string; runId: string; pipelineId: string; step?: string; status: string; attempt?: number; at?: string };
    if (e.type === 'run' && (e.status === 'cancelled' || e.status === 'failed')) {
      // A cancelled attempt never reports its end: forget the run's open attempts.
      for (const k of started.keys()) if (k.startsWith(`${e.runId}|`)) started.delete(k);
      return;
    }
    if (e.type !== 'step' || !e.step || e.attempt === undefined || !e.at) return;
    const key = `${e.runId}|${e.step}|${e.attempt}`;
    const at = Date.parse(e.at);
    if (e.status === 'running') {
      // A checkpoint save repeats 'running' for the same attempt: keep the first.
      if (!started.has(key)) started.set(key, at);
      // Attempts whose end this process never sees must not accumulate.
      if (started.size > 10_000) started.delete(started.keys().next().value!);
      return;
    }
    const t0 = started.get(key);
    if (t0 === undefined) return;
    started.delete(key);
    const outcome = e.status === 'succeeded' ? 'succeeded' : 'failed';
    stepDuration.observe({ pipeline: e.pipelineId, step: e.step, outcome }, Math.max(0, (at - t0) / 1000));
  });
}
