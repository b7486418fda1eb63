import { z } from 'zod';
import { whileAttemptLive } from '../db/fence';
import { defineStep } from './define';
import { checked, passed, publishedEvent } from './sink-events';
import { dataCheckSchema } from './query-steps';
import { freshnessConfigFields } from './freshness-config';
import { badRowsConfigFields } from './transforms/bad-rows';
import type { Services } from './services';
import { writeRedisDataset } from './sinks/redis-dataset';
import { normaliseContact, type YespoContact } from './sources/yespo-schema';
import { type YespoStagedRef } from './sources/yespo';
import { openStaging, readStaged, stagedRefSchema, type StagedRef } from './staging';

/** The steps after Yespo's paginate (steps/sources/yespo.ts): validate + normalise each
 *  contact, then write the hash `cache:<dataset>` (field: contact id, value: JSON). */
export const yespoConfigSchema = z.object({
  brand: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/),
  groupId: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/),
  pageSize: z.number().int().min(1).max(500).default(500),
  /** Requests per second for this API key, shared by every run and worker using it. */
  ratePerSec: z.number().min(0.1).max(100).default(5),
  dataset: z.string().regex(/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$/),
  /** How many malformed contacts paginate may reject (steps/transforms/bad-rows.ts); default {max: 0}. */
  ...badRowsConfigFields,
  ...freshnessConfigFields,
  check: dataCheckSchema.default({ allowEmpty: false, minFractionOfLast: 0.5 }),
});
export type YespoConfig = z.infer<typeof yespoConfigSchema>;

// paginate has validated each contact (rejecting bad ones under the badRows policy);
// transform normalises them into the shape the marketing site reads.
export const yespoTransformStep = defineStep<Services, YespoConfig, YespoStagedRef>({
  key: 'transform',
  input: stagedRefSchema.extend({ sandbox: z.boolean(), badRows: z.number() }),
  retry: { attempts: 2, baseMs: 1_000, maxMs: 10_000 },
  timeoutMs: 30 * 60_000,
  async run(ctx) {
    const input = ctx.input;
    const out = await openStaging(ctx.services.db, ctx.runId, `transform.a${ctx.attempt}`);
    let n = 0;
    ctx.progress({ rowsDone: 0, rowsTotal: input.rows });
    for await (const page of readStaged<YespoContact>(ctx.services.db, input, ctx.signal)) {
      await out.writeMany(page.map(normaliseContact));
      n += page.length;
      ctx.reportRows({ in: n, out: n });
    }
    const staged = await out.close();
    ctx.event('staged', `${staged.rows} contacts normalised and staged`, { rows: staged.rows, chunks: staged.chunks });
    return { ...staged, sandbox: !!input.sandbox, badRows: input.badRows ?? 0 };
  },
});

export const yespoWriteStep = defineStep<Services, YespoConfig, StagedRef & { sandbox?: boolean }>({
  key: 'write',
  input: stagedRefSchema.extend({ sandbox: z.boolean().optional() }),
  retry: { attempts: 3, baseMs: 2_000, maxMs: 30_000 },
  timeoutMs: 30 * 60_000,
  async run(ctx) {
    const input = ctx.input;
    ctx.progress({ rowsDone: 0, rowsTotal: input.rows });
    const r = await checked(ctx, ctx.config.dataset, () => writeRedisDataset({
      redis: ctx.services.redis, dataset: ctx.config.dataset, shape: 'hash', keyField: 'id',
      batches: readStaged(ctx.services.db, input, ctx.signal), runId: ctx.runId, attempt: ctx.attempt, pipelineId: ctx.pipelineId,
      check: ctx.config.check, signal: ctx.signal, step: ctx.stepKey, onCheck: (rows, last) => passed(ctx, ctx.config.dataset, rows, last),
      // The swap happens only while this attempt is the live one (db/fence.ts).
      whileLive: (swap) => whileAttemptLive(ctx.services.db.pool, { runId: ctx.runId, key: ctx.stepKey, attempt: ctx.attempt }, swap),
    }));
    ctx.reportRows({ in: input.rows, out: r.rows });
    publishedEvent(ctx, r.key, r.rows);
    return { sandbox: !!input.sandbox, key: r.key, rows: r.rows };
  },
});

