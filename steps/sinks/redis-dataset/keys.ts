import { NonRetryableError } from '../../../lib/errors';

/** The published dataset, its meta (readDatasetMeta), and the build key of one attempt. */
export const datasetKey = (dataset: string) => `cache:${dataset}`;
export const metaKey = (dataset: string) => `cache:${dataset}:meta`;
export const tmpKey = (dataset: string, runId: string) => `cache:${dataset}:tmp:${runId}`;
/** The publish fence of one run's step: the highest attempt that has published (see
 *  PUBLISH_ALL). Outside `cache:*`, which is the marketing site's. */
export const fenceKey = (runId: string, step: string) => `etl:fence:${runId}:${step}`;
/** Longer than any attempt can live (step timeouts are at most hours). */
export const FENCE_TTL_MS = 7 * 24 * 60 * 60_000;

/** An abandoned build (worker killed mid-write) expires on its own after this long; every
 *  write round refreshes it, so a slow but live build never loses its key. */
export const TMP_TTL_MS = 60 * 60_000;

const DATASET = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/;

export function validateDataset(dataset: string): void {
  // A dataset named like a sibling key would overwrite another dataset's meta or build key.
  if (!DATASET.test(dataset) || dataset.endsWith(':meta') || dataset.includes(':tmp:')) {
    throw new NonRetryableError(`invalid dataset name ${JSON.stringify(dataset)}`);
  }
}
