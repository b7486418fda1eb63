import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Database } from '../../db/client';
import { registerSecret } from '../../lib/redact';
import { defineStep } from '../define';
import { createRateLimiter, rateLimitKey } from '../rate-limit';
import { writeChunk, type StagedRef } from '../staging';
import { parseContacts } from './yespo-schema';
import { paginateContacts } from './yespo-client';
import { badRowsPolicy, createRejectTracker, type BadRowsPolicy } from '../transforms/bad-rows';

/**
 * The Yespo `paginate` step: stages a group's contacts page by page, checkpointing after
 * each, over the HTTP client in yespo-client.ts.
 */

export interface YespoEndpoint {
  baseUrl: string;
  apiKey: string;
  /** True when no credential exists and the built-in local fake serves the data. */
  sandbox: boolean;
}

export interface YespoServices {
  db: Database;
  redis: Redis;
  yespo(brand: string): Promise<YespoEndpoint>;
}

export interface YespoPaginateConfig {
  brand: string;
  groupId: string;
  pageSize: number;
  ratePerSec: number;
  /** The published dataset, naming the rejects' samples. */
  dataset?: string;
  badRows?: BadRowsPolicy;
  skipBadRows?: boolean;
}

const checkpointSchema = z.object({
  nextStartIndex: z.number().int().min(1),
  pagesDone: z.number().int().min(0),
  /** Valid contacts staged so far. */
  rows: z.number().int().min(0),
  fetched: z.number().int().min(0).default(0),
  bad: z.number().int().min(0).default(0),
  /** The last page is staged: a retry after a crash here need not ask the API again. */
  done: z.boolean().default(false),
  /** The first rejected contact's reason, for the over-the-limit message after a resume. */
  firstBad: z.string().optional(),
});
export type PaginateCheckpoint = z.infer<typeof checkpointSchema>;

/** badRows: malformed contacts rejected under the bad-rows policy (the staged chunks hold none). */
export type YespoStagedRef = StagedRef & { sandbox: boolean; badRows: number };

const STAGE = 'paginate';

/**
 * Stages each page as chunk `seq = page index` (0-based) and checkpoints after it, so a
 * failure on page 40 resumes at page 40 and re-writing a page after a crash replaces it.
 * The chunks hold validated contacts (yespo-schema, unknown fields kept); malformed ones
 * are rejected under the pipeline's badRows policy (steps/transforms/bad-rows.ts): counted
 * in the checkpoint, sampled in etl_step_rejects, and over the limit the step fails after
 * checkpointing the page, so a resume with a raised limit fetches no page again.
 */
export const yespoPaginateStep = defineStep<YespoServices, YespoPaginateConfig, unknown, YespoStagedRef>({
  key: 'paginate',
  retry: { attempts: 5, baseMs: 2_000, maxMs: 60_000 },
  timeoutMs: 30 * 60_000,
  output: z.object({
    kind: z.literal('staged'), runId: z.string(), name: z.string(), chunks: z.number(), rows: z.number(), sandbox: z.boolean(), badRows: z.number(),
  }),
  async run(ctx) {
    const { brand, groupId, pageSize, ratePerSec } = ctx.config;
    const dataset = ctx.config.dataset ?? `yespo:${brand}:contacts`;
    const endpoint = await ctx.services.yespo(brand);
    registerSecret(endpoint.apiKey);
    const saved = checkpointSchema.safeParse(ctx.checkpoint);
    // An unreadable checkpoint (e.g. from an older build) only costs a restart from page 1.
    if (ctx.checkpoint != null && !saved.success) ctx.log.warn('paginate checkpoint unreadable; starting from the first page');
    let cp: PaginateCheckpoint = saved.success ? saved.data : { nextStartIndex: 1, pagesDone: 0, rows: 0, fetched: 0, bad: 0, done: false };
    const ref = (): YespoStagedRef => ({
      kind: 'staged', runId: ctx.runId, name: STAGE, chunks: cp.pagesDone, rows: cp.rows, sandbox: endpoint.sandbox, badRows: cp.bad,
    });
    ctx.reportRows({ in: cp.fetched, out: cp.rows });
    // The policy is the pipeline's current one: a resume after raising it accepts the rejects.
    const rejects = createRejectTracker({
      db: ctx.services.db, runId: ctx.runId, stepKey: ctx.stepKey, policy: badRowsPolicy(ctx.config), total: cp.bad, first: cp.firstBad,
    });
    // Samples of pages past the checkpoint will be taken again.
    await rejects.clear(cp.pagesDone + 1);
    if (cp.done) {
      rejects.check(cp.fetched);
      return ref();
    }
    rejects.checkEarly();

    const limiter = createRateLimiter(ctx.services.redis, { key: rateLimitKey('yespo', endpoint.apiKey), ratePerSec });
    await paginateContacts({
      baseUrl: endpoint.baseUrl, apiKey: endpoint.apiKey, groupId, pageSize, startIndex: cp.nextStartIndex,
      limiter, signal: ctx.signal, log: ctx.log, onEvent: (type, message, data) => ctx.event(type, message, data),
      async onPage(page, info) {
        const pageNo = cp.pagesDone + 1;
        const parsed = parseContacts(page, {
          skipBad: true, offset: info.startIndex - 1,
          onBad: (b) => rejects.add({ dataset, row: b.row, page: pageNo, reason: b.reason, path: b.path || undefined, value: b.value }),
        });
        if (parsed.bad) ctx.log.warn({ bad: parsed.bad, firstError: parsed.firstError }, 'rejected malformed Yespo contacts');
        await writeChunk(ctx.services.db, ctx.runId, STAGE, cp.pagesDone, parsed.contacts);
        // Samples before the checkpoint: a crash in between re-takes the same ones (idempotent).
        if (parsed.bad) await rejects.flush();
        cp = {
          nextStartIndex: info.nextStartIndex, pagesDone: pageNo, rows: cp.rows + parsed.contacts.length,
          fetched: cp.fetched + page.length, bad: rejects.total, done: info.last,
          ...(rejects.first ? { firstBad: rejects.first } : {}),
        };
        ctx.event('page', `page ${cp.pagesDone}: ${page.length} contacts from startindex ${info.startIndex} in ${info.ms} ms`, {
          startindex: info.startIndex, rows: page.length, ms: info.ms, ...(parsed.bad ? { bad: parsed.bad } : {}),
        });
        ctx.progress({ pagesDone: cp.pagesDone });
        await ctx.saveCheckpoint(cp);
        ctx.reportRows({ in: cp.fetched, out: cp.rows });
        // After the checkpoint: a resume with a raised limit goes on from the next page.
        rejects.checkEarly();
      },
    });
    rejects.check(cp.fetched);
    return ref();
  },
});
