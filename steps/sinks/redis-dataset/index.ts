/** The Redis dataset sink: build under a per-attempt key, check, swap in atomically.
 *  See README.md for the layout and what must stay true. */
export { writeRedisDataset, type WriteRedisDatasetArgs, type WriteRedisDatasetResult } from './write';
export { datasetMetaSchema, readDatasetMeta, type DatasetMeta, type DatasetShape } from './publish';
export { datasetKey, metaKey, tmpKey, TMP_TTL_MS } from './keys';
