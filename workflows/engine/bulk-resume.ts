import * as runs from '../../db/runs';
import type { RunStatus } from '../../db/schema';
import { AppError } from '../../lib/errors';
import type { EngineContext } from './engine-context';

/**
 * Bulk resume (SPEC §13): after an outage, resume per pipeline only the newest failed (or
 * cancelled) run, and only when no newer run of that pipeline succeeded. Older matches
 * are reported as skipped, never resumed: each would publish older data than the newest.
 * A dry run answers the same from Postgres and changes nothing.
 */
export interface BulkResumeFilter {
  pipelineId?: string;
  statuses?: ('failed' | 'cancelled')[];
  since?: string;
  until?: string;
  dryRun?: boolean;
}

export interface BulkResumeResult {
  matched: number;
  resumed: string[];
  skipped: { runId: string; pipelineId: string; reason: string; supersededBy?: string }[];
  dryRun: boolean;
}

type Resume = (runId: string) => Promise<unknown>;

export async function bulkResume(ctx: EngineContext, resume: Resume, f: BulkResumeFilter): Promise<BulkResumeResult> {
  const statuses: RunStatus[] = f.statuses?.length ? [...new Set(f.statuses)] : ['failed'];
  const found = await runs.resumeCandidates(ctx.db.pool, { pipelineId: f.pipelineId, statuses, since: f.since, until: f.until });
  const out: BulkResumeResult = { matched: found.length, resumed: [], skipped: [], dryRun: f.dryRun ?? false };
  for (const r of found) {
    const skip = (reason: string, extra: { supersededBy?: string } = {}) =>
      out.skipped.push({ runId: r.id, pipelineId: r.pipelineId, reason, ...extra });
    if (r.rank > 1) skip('not_newest');
    else if (r.supersededBy) skip('superseded', { supersededBy: r.supersededBy });
    else if (r.pipelineActive) skip('run_active');
    else if (out.dryRun) out.resumed.push(r.id);
    else {
      try {
        await resume(r.id);
        out.resumed.push(r.id);
      } catch (err) {
        // Lost a race (a run started, a success landed), the pipeline is gone, or Postgres
        // hiccuped: report it and go on, so the answer always lists what was resumed.
        skip(err instanceof AppError ? err.code : 'error');
      }
    }
  }
  return out;
}
