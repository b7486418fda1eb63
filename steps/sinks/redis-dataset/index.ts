/** The Redis dataset sink: build under a per-attempt key, check, swap in atomically.
 *  See README.md for the layout and what must stay true. */
export {
  publishBuilt, writeRedisDataset, writeRedisDatasets, type BuiltDataset, type DatasetInput, type WriteRedisDatasetArgs, type WriteRedisDatasetResult,
  type WriteRedisDatasetsArgs,
} from './write';
export { datasetMetaSchema, readDatasetMeta, readDatasetMetas, type DatasetMeta, type DatasetShape } from './publish';
export { datasetKey, fenceKey, metaKey, tmpKey, TMP_TTL_MS } from './keys';
export { dropRunBuilds, streamBuild, type StreamBuild } from './stream-build';
