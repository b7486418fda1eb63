import { StepAbortedError } from '../../lib/errors';

/**
 * The steps running in this process, by run, so a cancel (heard on the Redis broadcast or
 * found by the Postgres poll), a timeout or a shutdown can abort their `ctx.signal`.
 */
export class ActiveSteps {
  private byRun = new Map<string, Set<AbortController>>();
  /** Runs this process heard were cancelled, kept a minute: a handoff claimed before the
   *  cancel is then not taken over locally (the Postgres claim refuses it). */
  private cancelled = new Map<string, number>();

  add(runId: string, c: AbortController): () => void {
    let set = this.byRun.get(runId);
    if (!set) this.byRun.set(runId, (set = new Set()));
    set.add(c);
    return () => {
      set.delete(c);
      if (set.size === 0) this.byRun.delete(runId);
    };
  }

  abortRun(runId: string, reason: StepAbortedError): void {
    if (reason.reason === 'cancelled') {
      const now = Date.now();
      for (const [id, at] of this.cancelled) {
        if (now - at < 60_000) break;
        this.cancelled.delete(id);
      }
      this.cancelled.set(runId, now);
    }
    for (const c of this.byRun.get(runId) ?? []) c.abort(reason);
  }

  wasCancelled(runId: string): boolean {
    return this.cancelled.has(runId);
  }

  abortAll(reason: StepAbortedError): void {
    for (const id of this.byRun.keys()) this.abortRun(id, reason);
  }

  runIds(): string[] {
    return [...this.byRun.keys()];
  }

  get size(): number {
    return this.byRun.size;
  }
}

/**
 * The abort controller of one step execution, registered with `active` until `release()`:
 * it aborts on a cancel of the run, on the step's timeout, or when BullMQ aborts the job
 * (the worker shutting down), each with its own `StepAbortedError` reason.
 */
export function watchStep(active: ActiveSteps, a: {
  runId: string;
  key: string;
  timeoutMs: number | undefined;
  jobSignal: AbortSignal | undefined;
}): { controller: AbortController; release(): void } {
  const controller = new AbortController();
  const unregister = active.add(a.runId, controller);
  const timeout = setTimeout(
    () => controller.abort(new StepAbortedError(`step ${a.key} timed out after ${a.timeoutMs} ms`, 'timeout')),
    a.timeoutMs ?? 0,
  );
  const onJobAbort = () => controller.abort(new StepAbortedError('the worker is shutting down', 'shutdown'));
  a.jobSignal?.addEventListener('abort', onJobAbort, { once: true });
  return {
    controller,
    release() {
      clearTimeout(timeout);
      a.jobSignal?.removeEventListener('abort', onJobAbort);
      unregister();
    },
  };
}
