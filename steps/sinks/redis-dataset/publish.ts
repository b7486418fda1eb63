import type { Redis } from 'ioredis';
import { z } from 'zod';
import { StepAbortedError } from '../../../lib/errors';
import { datasetKey, FENCE_TTL_MS, fenceKey, metaKey } from './keys';
import { PUBLISH_ALL } from './scripts';

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

/** One dataset ready to swap in: its build key holds `size` (hash fields, or bytes of the
 *  JSON string). */
export interface PublishItem {
  dataset: string;
  tmp: string;
  shape: DatasetShape;
  size: number;
  meta: DatasetMeta;
}

/** The metas of several datasets in one round trip (null where none or unreadable). */
export async function readDatasetMetas(redis: Redis, datasets: readonly string[]): Promise<(DatasetMeta | null)[]> {
  if (datasets.length === 0) return [];
  const raws = await redis.mget(...datasets.map(metaKey));
  return raws.map((raw) => {
    if (raw === null) return null;
    try {
      const parsed = datasetMetaSchema.safeParse(JSON.parse(raw));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  });
}

/** Swaps every build key in as its dataset and writes the metas, in one script (see
 *  PUBLISH_ALL): all or nothing. With `fence`, refused (StepAbortedError) if a later
 *  attempt of the same run's step has already published. */
export async function publishDatasets(redis: Redis, items: readonly PublishItem[], fence?: { runId: string; step: string; attempt: number }): Promise<void> {
  const keys = [fence ? fenceKey(fence.runId, fence.step) : 'etl:fence:none'];
  const args = [fence ? String(fence.attempt) : '', String(FENCE_TTL_MS)];
  for (const it of items) {
    keys.push(it.tmp, datasetKey(it.dataset), metaKey(it.dataset));
    args.push(JSON.stringify(it.meta), it.shape, String(it.size));
  }
  try {
    await redis.eval(PUBLISH_ALL, keys.length, ...keys, ...args);
  } catch (err) {
    const m = /etl-fence: (.*)/.exec(String((err as Error).message));
    if (m) throw new StepAbortedError(`not publishing: ${m[1]}`, 'cancelled');
    throw err;
  }
}
