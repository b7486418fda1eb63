import { z } from 'zod';
import { whileAttemptLive } from '../db/fence';
import { NonRetryableError } from '../lib/errors';
import { defineStep } from './define';
import { checked, passed, publishedEvent } from './sink-events';
import { upsertRows } from './sinks/postgres-upsert';
import { writeRedisDatasets } from './sinks/redis-dataset';
import type { Services, SourceKind } from './services';
import { openStaging, stagedRefSchema, readStaged, readStagedBytes, type StagedRef } from './staging';
import { columnSpecSchema } from './transforms/columns';
import { rowEncoder } from './transforms/rows';
import { freshnessConfigFields } from './freshness-config';
import { badRowsConfigFields, badRowsPolicy, createRejectTracker } from './transforms/bad-rows';

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
  /** How many rows transform may reject (steps/transforms/bad-rows.ts); default {max: 0}. */
  ...badRowsConfigFields,
  ...freshnessConfigFields,
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
    ctx.progress({ rowsDone: 0, rowsTotal: Object.values(input.datasets).reduce((n, r) => n + r.rows, 0) });
    // Every attempt validates all rows again, under the pipeline's current badRows policy.
    const rejects = createRejectTracker({ db: ctx.services.db, runId: ctx.runId, stepKey: ctx.stepKey, policy: badRowsPolicy(ctx.config) });
    await rejects.clear();
    for (const ds of ctx.config.datasets) {
      const ref = input.datasets[ds.name];
      if (!ref) throw new Error(`fetch output has no dataset ${ds.name}; rerun from fetch`);
      const keyed = ds.shape === 'hash';
      const encoder = rowEncoder(ds.columns, keyed ? ds.keyField : undefined);
      const out = await openStaging(ctx.services.db, ctx.runId, `transform.${ds.name}.a${ctx.attempt}`);
      // Row numbers are 1-based and per dataset, in the order the source returned them.
      let dsRows = 0;
      const onBad = (b: { index: number; reason: string; path: string; line: string }) =>
        rejects.add({ dataset: ds.dataset, row: b.index, reason: b.reason, path: b.path || undefined, value: b.line });
      for await (const chunk of readStagedBytes(ctx.services.db, ref, ctx.signal)) {
        const v = encoder.encodeChunk(chunk, { offset: dsRows + 1, skipBad: true, what: ds.name, onBad });
        dsRows += v.rows;
        rowsIn += v.rows;
        if (v.bad) {
          await rejects.flush();
          rejects.checkEarly();
        }
        // Staged ready to publish: the write step sends these lines as they are.
        await out.writeBytes(v.data, v.rows - v.bad);
        ctx.reportRows({ in: rowsIn, out: rowsIn - rejects.total });
      }
      const staged = datasets[ds.name] = await out.close(keyed ? 'keyed' : 'json');
      ctx.reportRows({ in: rowsIn, out: rowsIn - rejects.total });
      ctx.event('staged', `${ds.name}: ${staged.rows} rows validated and staged${rejects.total ? ` (${rejects.total} rows rejected so far)` : ''}`, {
        dataset: ds.name, rows: staged.rows, rejected: rejects.total,
      });
    }
    await rejects.flush();
    rejects.check(rowsIn);
    if (rejects.total) ctx.log.warn({ badRows: rejects.total, firstBad: rejects.first }, 'rejected malformed rows');
    return { sandbox: input.sandbox, datasets, badRows: rejects.total, ...(rejects.first ? { firstBad: rejects.first } : {}) };
  },
});

/**
 * Publishes every dataset of the run together (steps/sinks/redis-dataset writeRedisDatasets):
 * all are built first, all pass the data check or none publishes, then, for bq.projects,
 * the Postgres mirror commits (upsert + delete of vanished keys, one transaction), and only
 * then one Redis script swaps every dataset and meta in. Both commits are fenced by the
 * attempt (db/fence.ts): a cancelled or superseded attempt, even one that ignores its
 * signal, changes neither store. A Redis failure after the Postgres commit fails the step;
 * its retry converges both stores (the mirror is idempotent).
 */
export const queryWriteStep = defineStep<Services, QueryConfig, z.infer<typeof transformOutput>>({
  key: 'write',
  input: transformOutput,
  retry: { attempts: 3, baseMs: 2_000, maxMs: 30_000 },
  timeoutMs: 60 * 60_000,
  async run(ctx) {
    const input = ctx.input;
    const { redis, db } = ctx.services;
    const fence = { runId: ctx.runId, key: ctx.stepKey, attempt: ctx.attempt };
    const refs = ctx.config.datasets.map((ds) => {
      const ref = input.datasets[ds.name];
      if (!ref) throw new NonRetryableError(`transform output has no dataset ${ds.name}; rerun from transform`);
      return ref;
    });
    const pg = ctx.config.postgres;
    const pgIndex = pg ? ctx.config.datasets.findIndex((ds) => ds.name === pg.dataset) : -1;
    if (pg && pgIndex < 0) throw new NonRetryableError(`postgres.dataset ${pg.dataset} is not one of the datasets`);
    ctx.progress({ rowsDone: 0, rowsTotal: refs.reduce((n, r) => n + r.rows, 0) });
    const results = await checked(ctx, ctx.config.datasets.map((ds) => ds.dataset).join(', '), () => writeRedisDatasets({
      redis, runId: ctx.runId, attempt: ctx.attempt, step: ctx.stepKey, pipelineId: ctx.pipelineId, check: ctx.config.check, signal: ctx.signal,
      datasets: ctx.config.datasets.map((ds, i) => ({ dataset: ds.dataset, shape: ds.shape, chunks: readStagedBytes(db, refs[i], ctx.signal) })),
      // Every data check has passed: the mirror commits before the Redis swap.
      beforePublish: async (built) => {
        for (const b of built) passed(ctx, b.dataset, b.rows, b.lastRows);
        if (!pg) return;
        const r = await upsertRows({
          db, table: pg.table, keyColumns: pg.keyColumns, columns: pg.columns, batches: readStaged(db, refs[pgIndex], ctx.signal),
          runId: ctx.runId, signal: ctx.signal, check: ctx.config.check, lastGoodRows: built[pgIndex].lastRows, deleteMissing: true, fence, pipelineId: ctx.pipelineId,
        });
        ctx.log.info({ table: pg.table, ...r }, 'postgres mirror committed');
        ctx.event('published', `${pg.table}: mirror committed`, { table: pg.table, ...r });
      },
      whileLive: (swap) => whileAttemptLive(db.pool, fence, swap),
    }));
    const published: Record<string, { key: string; rows: number }> = {};
    let rows = 0;
    ctx.config.datasets.forEach((ds, i) => {
      published[ds.name] = { key: results[i].key, rows: results[i].rows };
      rows += results[i].rows;
      publishedEvent(ctx, results[i].key, results[i].rows);
    });
    ctx.reportRows({ in: rows, out: rows });
    return { sandbox: input.sandbox, datasets: published };
  },
});
