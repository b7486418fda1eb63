import type { Redis } from 'ioredis';
import { NonRetryableError } from '../../../lib/errors';
import { checkRowCount, type DataCheckPolicy } from '../data-check';
import type { DatasetBuilder } from './builder';
import { HashBuilder } from './hash-builder';
import { JsonBuilder } from './json-builder';
import { datasetKey, tmpKey, validateDataset } from './keys';
import { publishDatasets, readDatasetMetas, type DatasetMeta, type DatasetShape, type PublishItem } from './publish';

/**
 * Publishes a dataset at `cache:<dataset>` atomically (SPEC §5): rows are streamed into a
 * temporary key, checked, then swapped in by one server-side script, so a reader sees the
 * old full version or the new full version, never a mix. Until the swap, the published
 * dataset and its meta are not touched at all, so a failed or cancelled run leaves them
 * byte-for-byte as they were.
 *
 * Shapes: 'hash' (field = row[keyField], value = the row as JSON; one row readable without
 * loading the set) and 'json' (one JSON array string; for small and medium datasets that
 * readers always load whole; Redis caps a string at 512 MB).
 */

export interface WriteRedisDatasetArgs {
  redis: Redis;
  dataset: string;
  shape: DatasetShape;
  /** Rows as objects; or, to skip a parse/serialise round, staged `chunks` of UTF-8
   *  NDJSON (whole lines): keyed lines (`"<field>"\t<value>`) for 'hash', JSON values for
   *  'json'. */
  batches?: AsyncIterable<readonly Record<string, unknown>[]>;
  chunks?: AsyncIterable<Buffer>;
  /** Required for 'hash' rows: the row property that becomes the hash field. */
  keyField?: string;
  runId: string;
  /** The step attempt writing: each attempt builds under its own key, so a zombie attempt
   *  of the same run cannot add to (or delete) the build of the current one. */
  attempt?: number;
  pipelineId: string;
  check?: DataCheckPolicy;
  /** Told the data check passed, just before the swap (for the step's event log). */
  onCheck?(rows: number, lastGoodRows: number | null): void;
  signal?: AbortSignal;
  /** Tuning. Defaults 1,000 fields per HSET × 8 HSETs per round trip: as fast as a
   *  hand-written multi-field HSET loop and ~2× one HSET per row (1M rows, measured). */
  fieldsPerCommand?: number;
  commandsPerRound?: number;
  /** The step key the attempt fence is kept for (default 'write'): with `attempt`, a swap
   *  by an attempt older than one that already published is refused inside the swap. */
  step?: string;
  /** Wraps the swap: e.g. holds the step's row lock in Postgres while it runs, so a
   *  cancel or takeover cannot commit in between (db/fence.ts whileAttemptLive). */
  whileLive?: <T>(swap: () => Promise<T>) => Promise<T>;
}

export interface WriteRedisDatasetResult {
  key: string;
  /** Rows published: hash fields (after de-duplication) or JSON array elements. */
  rows: number;
  /** Bytes of the published values (UTF-8), hash field names included. */
  bytes: number;
  /** Rows whose hash field repeated an earlier row's (the last one won). Always 0 for 'json'. */
  duplicates: number;
}

export async function writeRedisDataset(a: WriteRedisDatasetArgs): Promise<WriteRedisDatasetResult> {
  const [r] = await writeRedisDatasets({ ...a, datasets: [a] });
  return r;
}

/** One dataset of a run's publish (see writeRedisDatasets). */
export type DatasetInput = Pick<WriteRedisDatasetArgs, 'dataset' | 'shape' | 'batches' | 'chunks' | 'keyField' | 'check'>;

export interface WriteRedisDatasetsArgs extends Omit<WriteRedisDatasetArgs, 'dataset' | 'shape' | 'batches' | 'chunks' | 'keyField'> {
  datasets: readonly DatasetInput[];
  /** Runs after every dataset is built and has passed its data check, before the swap:
   *  e.g. the Postgres mirror's commit. A throw publishes nothing. */
  beforePublish?: (built: readonly BuiltDataset[]) => Promise<void>;
}

export interface BuiltDataset extends WriteRedisDatasetResult {
  dataset: string;
  shape: DatasetShape;
  tmp: string;
  size: number;
  /** The published version's rows before this publish (null: none). */
  lastRows: number | null;
}

/**
 * Publishes all of a run's datasets together (SPEC §5): each is built under its own build
 * key, one after the other; then every data check runs (one refusal publishes nothing);
 * then `beforePublish`; then one script swaps every dataset and meta in at once. A failure
 * or a kill at any point before the swap leaves every published dataset and meta as it
 * was; the build keys of a killed attempt expire on their own.
 */
export async function writeRedisDatasets(a: WriteRedisDatasetsArgs): Promise<WriteRedisDatasetResult[]> {
  for (const d of a.datasets) {
    validateDataset(d.dataset);
    if (d.shape === 'hash' && !d.keyField && d.batches) throw new NonRetryableError(`dataset ${d.dataset}: keyField is required for a hash`);
    if (!d.batches === !d.chunks) throw new Error('writeRedisDataset: give exactly one of batches and chunks');
  }
  if (new Set(a.datasets.map((d) => d.dataset)).size !== a.datasets.length) throw new NonRetryableError('a dataset is listed twice');
  const built: BuiltDataset[] = [];
  const attemptId = a.attempt === undefined ? a.runId : `${a.runId}.a${a.attempt}`;
  try {
    // Build keys of earlier attempts (a killed worker's) would only wait for their TTL.
    if (a.attempt !== undefined && a.attempt > 1) {
      const stale = a.datasets.flatMap((d) => Array.from({ length: Math.min(a.attempt! - 1, 20) }, (_, k) => tmpKey(d.dataset, `${a.runId}.a${a.attempt! - 1 - k}`)));
      await a.redis.unlink(...stale);
    }
    for (const d of a.datasets) built.push(await buildOne(a, d, tmpKey(d.dataset, attemptId)));
    return await publishBuilt(a, built);
  } catch (err) {
    await a.redis.unlink(...built.map((b) => b.tmp)).catch(() => {}); // else the TTL reclaims them
    throw err;
  }
}

/** The publish half of writeRedisDatasets, for datasets already built (also by the
 *  streaming build, ./stream-build.ts): every data check (one refusal publishes
 *  nothing), `beforePublish`, then the fenced swap of all of them at once. */
export async function publishBuilt(
  a: Pick<WriteRedisDatasetsArgs, 'redis' | 'runId' | 'attempt' | 'pipelineId' | 'check' | 'onCheck' | 'signal' | 'step' | 'whileLive' | 'beforePublish'>
    & { datasets: readonly Pick<DatasetInput, 'check'>[] },
  built: BuiltDataset[],
): Promise<WriteRedisDatasetResult[]> {
  a.signal?.throwIfAborted();
  const metas = await readDatasetMetas(a.redis, built.map((b) => b.dataset));
  built.forEach((b, i) => { b.lastRows = metas[i]?.rows ?? null; });
  for (const [i, b] of built.entries()) {
    try {
      checkRowCount(b.rows, b.lastRows, a.datasets[i].check ?? a.check);
    } catch (err) {
      if (built.length > 1 && err instanceof NonRetryableError) throw new NonRetryableError(`dataset ${b.dataset}: ${err.message}`, err.details);
      throw err;
    }
  }
  for (const b of built) a.onCheck?.(b.rows, b.lastRows);
  await a.beforePublish?.(built);
  a.signal?.throwIfAborted();
  const updatedAt = new Date().toISOString();
  const items: PublishItem[] = built.map((b) => ({
    dataset: b.dataset, tmp: b.tmp, shape: b.shape, size: b.size,
    meta: { runId: a.runId, pipelineId: a.pipelineId, rows: b.rows, updatedAt, shape: b.shape, bytes: b.bytes } satisfies DatasetMeta,
  }));
  const fence = a.attempt === undefined ? undefined : { runId: a.runId, step: a.step ?? 'write', attempt: a.attempt };
  const swap = () => publishDatasets(a.redis, items, fence);
  await (a.whileLive ? a.whileLive(swap) : swap());
  return built.map(({ key, rows, bytes, duplicates }) => ({ key, rows, bytes, duplicates }));
}

/** Builds one dataset under `tmp`; on failure leaves no build key behind. */
async function buildOne(a: WriteRedisDatasetsArgs, d: DatasetInput, tmp: string): Promise<BuiltDataset> {
  const writer: DatasetBuilder = d.shape === 'hash' ? new HashBuilder(a.redis, tmp, d.keyField ?? '', a) : new JsonBuilder(a.redis, tmp);
  try {
    a.signal?.throwIfAborted();
    // UNLINK, not DEL, for anything that may be big: freeing a 1M-field hash in the main
    // thread stalls every Redis client for ~0.5 s (measured); UNLINK frees it in the background.
    await a.redis.unlink(tmp);
    await build(writer, { ...d, signal: a.signal });
    const { rows, bytes, duplicates, size } = writer;
    return { dataset: d.dataset, key: datasetKey(d.dataset), shape: d.shape, tmp, size, rows, bytes, duplicates, lastRows: null };
  } catch (err) {
    // Writes still in flight must land before the delete, or one could recreate the key.
    await writer.settle();
    await a.redis.unlink(tmp).catch(() => {});
    throw err;
  }
}

/** Feeds every chunk or batch to the builder, then waits for all its writes. */
async function build(writer: DatasetBuilder, a: Pick<WriteRedisDatasetArgs, 'batches' | 'chunks' | 'signal'>): Promise<void> {
  if (a.chunks) {
    for await (const chunk of a.chunks) {
      a.signal?.throwIfAborted();
      await writer.addChunk(chunk);
    }
  } else {
    for await (const batch of a.batches!) {
      a.signal?.throwIfAborted();
      await writer.add(batch);
    }
  }
  await writer.finish();
}
