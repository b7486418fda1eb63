import type pg from 'pg';
import { StepAbortedError } from '../lib/errors';
import { withTransaction, type Queryable } from './tx';

/**
 * The publish fence of a step attempt (a sink's commit or swap). A step attempt may keep
 * running after it was cancelled or superseded (its code ignores the AbortSignal, its
 * worker was thought dead): the only thing that may decide whether it still publishes is
 * the step's row in Postgres, read under a row lock in the same transaction as the commit
 * (or around the Redis swap). Every state change that ends an attempt (cancel, a new
 * claim, fail, release) updates that row, so it waits for the lock: either the publish
 * happened while the attempt was live, or the attempt sees it is no longer live and
 * publishes nothing.
 */
export interface StepFence {
  runId: string;
  key: string;
  attempt: number;
}

/** Throws StepAbortedError unless `f.attempt` is the step's current attempt, still
 *  running, in an active run; on success the step row stays locked until the caller's
 *  transaction ends. */
export async function lockLiveAttempt(q: Queryable, f: StepFence): Promise<void> {
  const { rows } = await q.query<{ step_status: string; attempts: number; run_status: string }>({
    name: 'etl-lock-live-attempt',
    text: `select st.status as step_status, st.attempts, r.status as run_status
     from etl_run_steps st join etl_runs r on r.id = st.run_id
     where st.run_id = $1 and st.key = $2 for update of st`,
    values: [f.runId, f.key],
  });
  const row = rows[0];
  if (row && row.attempts === f.attempt && row.step_status === 'running' && (row.run_status === 'running' || row.run_status === 'queued')) return;
  const why = !row ? 'the step does not exist'
    : row.run_status === 'cancelled' ? 'the run was cancelled'
    : row.attempts !== f.attempt ? `attempt ${f.attempt} was superseded by attempt ${row.attempts}`
    : `the step is ${row.step_status} and the run ${row.run_status}`;
  throw new StepAbortedError(`not publishing: ${why}`, 'cancelled');
}

/** Runs `fn` (e.g. a Redis swap) while the attempt is verified live and its step row
 *  locked, so no cancel or takeover can commit in between. */
export async function whileAttemptLive<T>(pool: pg.Pool, f: StepFence, fn: () => Promise<T>): Promise<T> {
  return withTransaction(pool, async (client) => {
    await lockLiveAttempt(client, f);
    return fn();
  });
}
