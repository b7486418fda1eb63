import type { Redis } from 'ioredis';
import { z } from 'zod';
import { datasetKey, metaKey } from './keys';
import { PUBLISH } from './scripts';

export type DatasetShape = 'hash' | 'json';

export const datasetMetaSchema = z.looseObject({
  runId: z.string(),
  pipelineId: z.string(),
  rows: z.number().int().nonnegative(),
  updatedAt: z.string(),
  shape: z.enum(['hash', 'json']).optional(),
  bytes: z.number().optional(),
});
export type DatasetMeta = z.infer<typeof datasetMetaSchema>;

/** The meta of the published dataset, or null when none (or unreadable: then the data
 *  check has no baseline, which is better than refusing every future run). */
export async function readDatasetMeta(redis: Redis, dataset: string): Promise<DatasetMeta | null> {
  const raw = await redis.get(metaKey(dataset));
  if (raw === null) return null;
  try {
    const parsed = datasetMetaSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Swaps the build key `tmp` in as the dataset and writes its meta, in one script (see
 *  PUBLISH); fails, changing nothing, unless the build key holds `size` (hash fields, or
 *  bytes of the JSON string). */
export async function publishDataset(redis: Redis, a: {
  dataset: string; tmp: string; shape: DatasetShape; size: number; meta: DatasetMeta;
}): Promise<void> {
  await redis.eval(PUBLISH, 3, a.tmp, datasetKey(a.dataset), metaKey(a.dataset), JSON.stringify(a.meta), a.shape, String(a.size));
}
