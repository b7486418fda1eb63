import { z } from 'zod';

/** Pipeline config `freshness` (SPEC §11): how old a published dataset may get before it
 *  is stale. Without it, twice the pipeline's longest cron gap (workflows/freshness.ts). */
export const freshnessConfigSchema = z.strictObject({
  maxAgeSeconds: z.number().int().min(60).max(366 * 86_400).optional(),
});

export const freshnessConfigFields = { freshness: freshnessConfigSchema.optional() };
