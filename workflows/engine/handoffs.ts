import type { Job } from 'bullmq';
import type { Database } from '../../db/client';
import * as stepState from '../../db/steps';
import type { Logger } from '../../lib/logger';
import { withDbRetry } from '../../lib/pg-retry';
import type { ActiveSteps } from './active-steps';
import type { StepJobData } from './flow';

/** How long a handoff may wait for its job and still be taken over without Postgres;
 *  an older one (a backed-up queue) goes through the fenced claim, which re-checks the run. */
export const HANDOFF_FRESH_MS = 1_000;

export interface Handoffs {
  /** Keeps the claim this process made for the next step's job when completing a step. */
  keep(jobId: string, claim: stepState.ClaimedStep): void;
  /** The handoff for this job, if this is its first activation (BullMQ counts
   *  activations atomically, so no other execution of the job can take it too). */
  take(job: Job<StepJobData>): stepState.ClaimedStep | null;
  /** The step's completion for this job is being sent: it clears the flag itself. */
  settled(jobId: string): void;
}

export function createHandoffs(deps: { db: Database; log: Logger; active: ActiveSteps }): Handoffs {
  const { db, log, active } = deps;
  // Claims this process made for the next step's job when completing a step, by job id.
  const handoffs = new Map<string, { claim: stepState.ClaimedStep; at: number }>();

  // Handoffs taken here are recorded in Postgres within a few milliseconds, many to a
  // statement, without holding the step back: until then the claim is ours only by
  // BullMQ's activation count; after, no redelivery of the job (say, by a Redis that lost
  // recent writes) can adopt the same attempt from Postgres. A step whose completion is
  // already on its way when the write goes out is left out of it: completeStep clears the
  // flag itself in the same row (when it matches no row, whoever changed the step cleared
  // it: every transition does). So a short step costs no write of its own; its flag is
  // cleared when its completion commits, at worst a group commit's wait (a few ms) later
  // than the write would have.
  let taken = new Map<string, { runId: string; key: string; attempt: number }>();
  let takenTimer: NodeJS.Timeout | undefined;
  function recordTaken(jobId: string, h: { runId: string; key: string; attempt: number }) {
    taken.set(jobId, h);
    takenTimer ??= setTimeout(() => {
      const list = [...taken.values()];
      taken = new Map();
      takenTimer = undefined;
      if (list.length === 0) return;
      withDbRetry(() => stepState.markHandoffsTaken(db.pool, list), { retries: 3 })
        .catch((err) => log.warn({ n: list.length, err: String(err) }, 'could not record handoffs as taken'));
    }, 5);
  }

  return {
    keep(jobId, claim) {
      const now = Date.now();
      for (const [id, h] of handoffs) {
        if (now - h.at < HANDOFF_FRESH_MS && handoffs.size < 10_000) break;
        handoffs.delete(id);
      }
      handoffs.set(jobId, { claim, at: now });
    },
    take(job) {
      const h = handoffs.get(job.id!);
      if (!h) return null;
      handoffs.delete(job.id!);
      if (job.attemptsStarted !== 1 || Date.now() - h.at >= HANDOFF_FRESH_MS || active.wasCancelled(job.data.runId)) return null;
      recordTaken(job.id!, { runId: job.data.runId, key: job.data.key, attempt: h.claim.attempt });
      return h.claim;
    },
    settled(jobId) {
      taken.delete(jobId);
    },
  };
}
