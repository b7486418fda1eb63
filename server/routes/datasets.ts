import { listDatasetFreshness } from '../../workflows/freshness';
import type { AppDeps } from '../context';
import { route, type RouteGroup } from '../route';
import * as s from '../schemas';

/** Datasets and their freshness (SPEC §11); the evaluation lives in workflows/freshness.ts. */
export function datasetRoutes(deps: AppDeps): RouteGroup {
  return {
    base: '/api/etl',
    routes: [
      route({
        method: 'GET', path: '/datasets', tag: 'datasets',
        summary: 'Every dataset a pipeline publishes, with rows, last run, age and freshness (fresh, stale, never)',
        query: s.DatasetsQuery,
        responses: { 200: { description: 'the datasets', schema: s.DatasetList }, 400: { description: 'invalid query', schema: s.ErrorResponse } },
        handler: async (c, { query }) => {
          const all = await listDatasetFreshness({ db: deps.db, redis: deps.redis });
          const datasets = all.filter((d) => (!query.pipelineId || d.pipelineId === query.pipelineId) && (!query.status || d.status === query.status));
          return c.json({ datasets });
        },
      }),
    ],
  };
}
