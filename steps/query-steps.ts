import { z } from 'zod';
import { defineStep } from './define';
import { checked, passed, publishedEvent } from './sink-events';
import { checkRowCount } from './sinks/data-check';
import { upsertRows } from './sinks/postgres-upsert';
import { readDatasetMeta, writeRedisDataset } from './sinks/redis-dataset';
import type { Services, SourceKind } from './services';
import { openStaging, stagedRefSchema, readStaged, readStagedBytes, type StagedRef } from './staging';
import { columnSpecSchema } from './transforms/columns';
import { rowEncoder } from './transforms/rows';

/**
 * The fetch → transform → write steps of a query pipeline (BigQuery, ClickHouse): each
 * configured dataset is one SQL query, staged in pages, validated against its columns,
 * then published atomically as a Redis dataset (and upserted into Postgres if asked).
 */
export const datasetSpecSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_]{0,40}$/),
  sql: z.string().min(1).max(20_000),
  /** Published as Redis `cache:<dataset>`. */
  dataset: z.string().regex(/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$/).max(120),
  shape: z.enum(['hash', 'json']),
  keyField: z.string().optional(),
  columns: columnSpecSchema,
}).refine((d) => d.shape !== 'hash' || (d.keyField && Object.hasOwn(d.columns, d.keyField)), {
  message: 'a hash dataset needs a keyField that is one of its columns',
});

export const dataCheckSchema = z.object({
  allowEmpty: z.boolean().default(false),
  minFractionOfLast: z.number().min(0).max(1).default(0.5),
});

export const queryConfigSchema = z.object({
  credential: z.string().min(1),
  projectId: z.string().optional(),
  location: z.string().optional(),
  pageSize: z.number().int().min(100).max(100_000).default(10_000),
  datasets: z.array(datasetSpecSchema).min(1).max(20),
  skipBadRows: z.boolean().default(false),
  check: dataCheckSchema.default({ allowEmpty: false, minFractionOfLast: 0.5 }),
  /** bq.projects: upsert this dataset's rows into a Postgres table before publishing. */
  postgres: z.object({
    dataset: z.string(),
    table: z.literal('bq_projects'),
    keyColumns: z.array(z.string()).min(1),
    columns: z.array(z.string()).min(1),
  }).optional(),
});
export type QueryConfig = z.infer<typeof queryConfigSchema>;

const stagedMap = z.record(z.string(), stagedRefSchema);
const fetchOutput = z.object({ sandbox: z.boolean(), datasets: stagedMap });
const transformOutput = z.object({ sandbox: z.boolean(), datasets: stagedMap, badRows: z.number(), firstBad: z.string().optional() });

export function queryFetchStep(kind: SourceKind) {
  return defineStep<Services, QueryConfig, unknown, z.infer<typeof fetchOutput>>({
    key: 'fetch',
    retry: { attempts: 3, baseMs: 5_000, maxMs: 120_000 },
    timeoutMs: 60 * 60_000,
    output: fetchOutput,
    async run(ctx) {
      const src = await ctx.services.querySource(kind, ctx.config.credential, { projectId: ctx.config.projectId });
      const datasets: Record<string, StagedRef> = {};
      let total = 0;
      for (const ds of ctx.config.datasets) {
        const out = await openStaging(ctx.services.db, ctx.runId, `fetch.${ds.name}.a${ctx.attempt}`);
        if (src.chunks) {
          for await (const c of src.chunks(ds.sql, { signal: ctx.signal })) {
            await out.writeBytes(c.data, c.rows);
            total += c.rows;
            ctx.reportRows({ out: total });
          }
        } else {
          const before = total;
          const onTotal = (n: number) => ctx.progress({ rowsTotal: before + n });
          for await (const page of src.lines(ds.sql, { pageSize: ctx.config.pageSize, signal: ctx.signal, location: ctx.config.location, onTotal })) {
            await out.writeLines(page);
            total += page.length;
            ctx.reportRows({ out: total });
          }
        }
        datasets[ds.name] = await out.close();
        const ref = datasets[ds.name];
        ctx.event('staged', `${ds.name}: ${ref.rows} rows staged in ${ref.chunks} chunks`, { dataset: ds.name, rows: ref.rows, chunks: ref.chunks });
      }
      return { sandbox: src.sandbox, datasets };
    },
  });
}

export const queryTransformStep = defineStep<Services, QueryConfig, z.infer<typeof fetchOutput>, z.infer<typeof transformOutput>>({
  key: 'transform',
  input: fetchOutput,
  retry: { attempts: 2, baseMs: 1_000, maxMs: 10_000 },
  timeoutMs: 60 * 60_000,
  output: transformOutput,
  async run(ctx) {
    const input = ctx.input;
    const datasets: Record<string, StagedRef> = {};
    let rowsIn = 0;
    let badRows = 0;
    let firstBad: string | undefined;
    ctx.progress({ rowsDone: 0, rowsTotal: Object.values(input.datasets).reduce((n, r) => n + r.rows, 0) });
    for (const ds of ctx.config.datasets) {
      const ref = input.datasets[ds.name];
      if (!ref) throw new Error(`fetch output has no dataset ${ds.name}; rerun from fetch`);
      const keyed = ds.shape === 'hash';
      const encoder = rowEncoder(ds.columns, keyed ? ds.keyField : undefined);
      const out = await openStaging(ctx.services.db, ctx.runId, `transform.${ds.name}.a${ctx.attempt}`);
      for await (const chunk of readStagedBytes(ctx.services.db, ref, ctx.signal)) {
        const v = encoder.encodeChunk(chunk, { offset: rowsIn, skipBad: ctx.config.skipBadRows, what: ds.name });
        rowsIn += v.rows;
        badRows += v.bad;
        firstBad ??= v.firstBad;
        // Staged ready to publish: the write step sends these lines as they are.
        await out.writeBytes(v.data, v.rows - v.bad);
        ctx.reportRows({ in: rowsIn, out: rowsIn - badRows });
      }
      const staged = datasets[ds.name] = await out.close(keyed ? 'keyed' : 'json');
      ctx.reportRows({ in: rowsIn, out: rowsIn - badRows });
      ctx.event('staged', `${ds.name}: ${staged.rows} rows validated and staged${badRows ? ` (${badRows} bad rows skipped so far)` : ''}`, {
        dataset: ds.name, rows: staged.rows, badRows,
      });
    }
    if (badRows) ctx.log.warn({ badRows, firstBad }, 'skipped malformed rows');
    return { sandbox: input.sandbox, datasets, badRows, ...(firstBad ? { firstBad } : {}) };
  },
});

export const queryWriteStep = defineStep<Services, QueryConfig, z.infer<typeof transformOutput>>({
  key: 'write',
  input: transformOutput,
  retry: { attempts: 3, baseMs: 2_000, maxMs: 30_000 },
  timeoutMs: 60 * 60_000,
  async run(ctx) {
    const input = ctx.input;
    const { redis, db } = ctx.services;
    const published: Record<string, { key: string; rows: number }> = {};
    let rows = 0;
    ctx.progress({ rowsDone: 0, rowsTotal: Object.values(input.datasets).reduce((n, r) => n + r.rows, 0) });
    for (const ds of ctx.config.datasets) {
      const ref = input.datasets[ds.name]!;
      const pg = ctx.config.postgres?.dataset === ds.name ? ctx.config.postgres : undefined;
      if (pg) {
        // Check before either sink changes anything, so a bad load publishes nowhere.
        const last = (await readDatasetMeta(redis, ds.dataset))?.rows ?? null;
        checked(ctx, ds.dataset, () => checkRowCount(ref.rows, last, ctx.config.check));
        passed(ctx, ds.dataset, ref.rows, last);
        await upsertRows({ db, table: pg.table, keyColumns: pg.keyColumns, columns: pg.columns, batches: readStaged(db, ref, ctx.signal), runId: ctx.runId, signal: ctx.signal });
      }
      const r = await checked(ctx, ds.dataset, () => writeRedisDataset({
        redis, dataset: ds.dataset, shape: ds.shape, chunks: readStagedBytes(db, ref, ctx.signal),
        runId: ctx.runId, attempt: ctx.attempt, pipelineId: ctx.pipelineId, check: ctx.config.check, signal: ctx.signal,
        onCheck: pg ? undefined : (n, last) => passed(ctx, ds.dataset, n, last),
      }));
      published[ds.name] = { key: r.key, rows: r.rows };
      rows += r.rows;
      ctx.reportRows({ in: rows, out: rows });
      publishedEvent(ctx, r.key, r.rows);
    }
    return { sandbox: input.sandbox, datasets: published };
  },
});
