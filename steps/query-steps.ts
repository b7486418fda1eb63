import { z } from 'zod';
import { whileAttemptLive } from '../db/fence';
import { NonRetryableError, StepAbortedError } from '../lib/errors';
import { defineStep, type StepContext } from './define';
import { checked, passed, publishedEvent } from './sink-events';
import { upsertRows } from './sinks/postgres-upsert';
import { dropRunBuilds, publishBuilt, streamBuild, tmpKey, type BuiltDataset, type StreamBuild } from './sinks/redis-dataset';
import { validateDataset } from './sinks/redis-dataset/keys';
import type { Services, SourceKind } from './services';
import { openStaging, stagedRefSchema, readStaged, type StagedRef } from './staging';
import { createAnnouncer, EpochMoved, sameStream, streamTag, Upstream, type StreamId } from './stream';
import * as blobs from '../db/blobs';
import { rememberChunk } from './chunk-cache';
import { clearRejects, firstRejectReason } from '../db/rejects';
import { streamSourceState } from '../db/steps';
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
      // The steps streaming from this one follow what it announces (steps/stream.ts).
      const announce = createAnnouncer(ctx);
      for (const ds of ctx.config.datasets) {
        const name = `fetch.${ds.name}.a${ctx.attempt}`;
        const out = await openStaging(ctx.services.db, ctx.runId, name, { streamed: true });
        await announce.open(ds.name, { runId: ctx.runId, name });
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
        await announce.close(ds.name, ref);
        ctx.event('staged', `${ds.name}: ${ref.rows} rows staged in ${ref.chunks} chunks`, { dataset: ds.name, rows: ref.rows, chunks: ref.chunks });
      }
      return { sandbox: src.sandbox, datasets };
    },
  });
}

/**
 * Validates and re-encodes fetch's rows while fetch still runs (it streams: steps/stream.ts,
 * ARCHITECTURE.md "Overlapped steps"): one output chunk per fetched chunk, same seq, under a
 * name fixed by fetch's epoch and the dataset's columns, so a later attempt continues after
 * the last chunk written and `write` can follow the chunks as they land.
 */
export const queryTransformStep = defineStep<Services, QueryConfig, z.infer<typeof fetchOutput> | undefined, z.infer<typeof transformOutput>>({
  key: 'transform',
  input: fetchOutput,
  streams: true,
  retry: { attempts: 2, baseMs: 1_000, maxMs: 10_000 },
  timeoutMs: 60 * 60_000,
  output: transformOutput,
  async run(ctx) {
    const { db } = ctx.services;
    const up = new Upstream(db, ctx.runId, 'fetch', ctx.signal);
    for (;;) {
      try {
        // A fresh announcer per epoch: no dataset keeps an announcement of the old one.
        return await transformEpoch(ctx, up, createAnnouncer(ctx));
      } catch (err) {
        if (!(err instanceof EpochMoved)) throw err;
        ctx.event('restarted', 'fetch started a new attempt: validating its rows from the start');
      }
    }
  },
});

type TransformCtx = StepContext<Services, QueryConfig, unknown>;
type TransformOutput = z.infer<typeof transformOutput>;

/** One pass over fetch's current epoch (continuing after the chunks already written). */
async function transformEpoch(ctx: TransformCtx, up: Upstream, announce: ReturnType<typeof createAnnouncer>): Promise<TransformOutput> {
  const { db } = ctx.services;
  const datasets: Record<string, StagedRef> = {};
  const consumed: Record<string, StreamId> = {};
  let rowsIn = 0;
  const names = ctx.config.datasets.map((d) => d.dataset);
  const rejects = createRejectTracker({ db, runId: ctx.runId, stepKey: ctx.stepKey, policy: badRowsPolicy(ctx.config) });
  for (const ds of ctx.config.datasets) {
    const src = await up.position(ds.name);
    consumed[ds.name] = src.id;
    const keyed = ds.shape === 'hash';
    const name = `transform.${ds.name}.${streamTag(src.id, ds.columns, keyed ? ds.keyField : null)}`;
    await announce.open(ds.name, { runId: ctx.runId, name });
    // Continue after the output chunks an earlier attempt wrote for this epoch.
    const [inRows, outRows] = await Promise.all([blobs.chunkRows(db.pool, src.id.runId, src.id.name), blobs.chunkRows(db.pool, ctx.runId, name)]);
    let seq = Math.min(inRows.length, outRows.length);
    let dsRows = sum(inRows, seq);
    let dsOut = sum(outRows, seq);
    // Samples past the continuation point come again.
    await clearRejects(db.pool, { runId: ctx.runId, stepKey: ctx.stepKey, from: { dataset: ds.dataset, row: dsRows } });
    rowsIn += dsRows;
    if (dsRows > dsOut) rejects.restore(rejects.total + dsRows - dsOut, await firstRejectReason(db.pool, ctx.runId, ctx.stepKey, names));
    if (seq) ctx.event('continued', `${ds.name}: continuing after chunk ${seq} (${dsRows} rows validated by an earlier attempt)`, { dataset: ds.name, chunks: seq, rows: dsRows });
    ctx.progress({ rowsDone: rowsIn, ...(src.closed ? { rowsTotal: src.closed.rows } : {}) });
    const encoder = rowEncoder(ds.columns, keyed ? ds.keyField : undefined);
    const onBad = (b: { index: number; reason: string; path: string; line: string }) =>
      rejects.add({ dataset: ds.dataset, row: b.index, reason: b.reason, path: b.path || undefined, value: b.line });
    // Row numbers are 1-based and per dataset, in the order the source returned them.
    // Staged ready to publish (the write step sends these lines as they are), fenced by
    // the attempt. One insert in flight while the next chunk is read and encoded; the
    // next is sent only once it committed, so chunks land in seq order (a continuation
    // never finds a gap, and never writes a chunk twice).
    let inFlight: Promise<void> | undefined;
    const put = async (at: number, data: Buffer, rows: number) => {
      const ok = await blobs.insertBlobFenced(db.pool, { runId: ctx.runId, name, seq: at, rows, data, step: ctx.stepKey, attempt: ctx.attempt });
      if (!ok) throw new StepAbortedError('the step was taken over or cancelled', 'cancelled');
      rememberChunk(ctx.runId, name, at, data);
    };
    try {
      for (let chunk = await up.chunk(ds.name, src.id, seq); chunk; chunk = await up.chunk(ds.name, src.id, ++seq)) {
        const v = encoder.encodeChunk(chunk, { offset: dsRows + 1, skipBad: true, what: ds.name, onBad });
        dsRows += v.rows;
        rowsIn += v.rows;
        dsOut += v.rows - v.bad;
        await inFlight;
        // A chunk's rejects are stored before the chunk: a chunk found written has them.
        if (v.bad) {
          await rejects.flush();
          rejects.checkEarly();
        }
        inFlight = put(seq, v.data, v.rows - v.bad);
        inFlight.catch(() => {}); // awaited before the next insert, or below
        ctx.reportRows({ in: rowsIn, out: rowsIn - rejects.total });
      }
      await inFlight;
    } finally {
      await inFlight?.catch(() => {}); // nothing of this attempt still writing when it ends
    }
    const staged: StagedRef = datasets[ds.name] = { kind: 'staged', runId: ctx.runId, name, chunks: seq, rows: dsOut, ...(keyed ? { format: 'keyed' as const } : {}) };
    await announce.close(ds.name, staged);
    ctx.event('staged', `${ds.name}: ${staged.rows} rows validated and staged${rejects.total ? ` (${rejects.total} rows rejected so far)` : ''}`, {
      dataset: ds.name, rows: staged.rows, rejected: rejects.total,
    });
  }
  // Done only once fetch is, with exactly the epochs read here (else: EpochMoved).
  const fetched = fetchOutput.parse(await up.finished());
  for (const ds of ctx.config.datasets) {
    const ref = fetched.datasets[ds.name];
    if (!ref || !sameStream(ref, consumed[ds.name])) throw new EpochMoved();
  }
  ctx.reportRows({ in: rowsIn, out: rowsIn - rejects.total });
  await rejects.flush();
  rejects.check(rowsIn);
  if (rejects.total) ctx.log.warn({ badRows: rejects.total, firstBad: rejects.first }, 'rejected malformed rows');
  return { sandbox: fetched.sandbox, datasets, badRows: rejects.total, ...(rejects.first ? { firstBad: rejects.first } : {}) };
}

const sum = (xs: readonly number[], n: number) => {
  let t = 0;
  for (let i = 0; i < n; i++) t += xs[i];
  return t;
};

/**
 * Builds every dataset of the run in Redis while transform still runs (it streams:
 * steps/stream.ts), continuing a build an earlier attempt left (stream-build.ts); then,
 * once transform has succeeded with exactly the chunks built, publishes them together
 * (steps/sinks/redis-dataset publishBuilt): every data check passes or none publishes,
 * then, for bq.projects, the Postgres mirror commits (upsert + delete of vanished keys, one
 * transaction), and only then one Redis script swaps every dataset and meta in. Both
 * commits are fenced by the attempt (db/fence.ts): a cancelled or superseded attempt, even
 * one that ignores its signal, changes neither store. A Redis failure after the Postgres
 * commit fails the step; its retry converges both stores (the mirror is idempotent).
 */
export const queryWriteStep = defineStep<Services, QueryConfig, z.infer<typeof transformOutput> | undefined>({
  key: 'write',
  input: transformOutput,
  streams: true,
  retry: { attempts: 3, baseMs: 2_000, maxMs: 30_000 },
  timeoutMs: 60 * 60_000,
  async run(ctx) {
    const pg = ctx.config.postgres;
    if (pg && !ctx.config.datasets.some((ds) => ds.name === pg.dataset)) throw new NonRetryableError(`postgres.dataset ${pg.dataset} is not one of the datasets`);
    for (const ds of ctx.config.datasets) validateDataset(ds.dataset);
    const up = new Upstream(ctx.services.db, ctx.runId, 'transform', ctx.signal);
    for (;;) {
      try {
        return await writeEpoch(ctx, up);
      } catch (err) {
        if (!(err instanceof EpochMoved)) throw err;
        ctx.event('restarted', 'transform started over on a new fetch attempt: building from the start');
      }
    }
  },
});

async function writeEpoch(ctx: StepContext<Services, QueryConfig, unknown>, up: Upstream) {
  const { redis, db } = ctx.services;
  const fence = { runId: ctx.runId, key: ctx.stepKey, attempt: ctx.attempt };
  const builds: StreamBuild[] = [];
  const built: BuiltDataset[] = [];
  const followed: StreamId[] = [];
  let rows = 0;
  try {
    for (const ds of ctx.config.datasets) {
      const src = await up.position(ds.name);
      followed.push(src.id);
      // The build follows the epoch and what it builds into (a renamed dataset or key field starts over).
      const tag = streamTag(src.id, ds.shape, ds.dataset, ds.keyField ?? null);
      const b = await streamBuild(redis, {
        runId: ctx.runId, dataset: ds.dataset, shape: ds.shape, attempt: ctx.attempt,
        tmp: tmpKey(ds.dataset, `${ctx.runId}.s${tag}`), state: `etl:build:${ctx.runId}:${tag}`,
      });
      builds.push(b);
      if (b.at.chunk || b.at.piece) ctx.event('continued', `${ds.name}: continuing the build at chunk ${b.at.chunk}`, { dataset: ds.name, chunk: b.at.chunk, piece: b.at.piece });
      for (let seq = b.at.chunk, chunk = await up.chunk(ds.name, src.id, seq); chunk; chunk = await up.chunk(ds.name, src.id, ++seq)) {
        await b.addChunk(seq, chunk);
        rows += lineCount(chunk);
        ctx.progress({ rowsDone: rows });
      }
      built.push(await b.finish());
    }
    // Publish only what transform finished with: the very chunks built here.
    const input = transformOutput.parse(await up.finished());
    const refs = ctx.config.datasets.map((ds, i) => {
      const ref = input.datasets[ds.name];
      if (!ref || !sameStream(ref, followed[i])) throw new EpochMoved();
      return ref;
    });
    const pg = ctx.config.postgres;
    const pgIndex = pg ? ctx.config.datasets.findIndex((ds) => ds.name === pg.dataset) : -1;
    const results = await checked(ctx, ctx.config.datasets.map((ds) => ds.dataset).join(', '), () => publishBuilt({
      redis, runId: ctx.runId, attempt: ctx.attempt, step: ctx.stepKey, pipelineId: ctx.pipelineId, check: ctx.config.check, signal: ctx.signal,
      datasets: ctx.config.datasets.map(() => ({})), // one policy for all: ctx.config.check
      // Every data check has passed: the mirror commits before the Redis swap.
      beforePublish: async (list) => {
        for (const b of list) passed(ctx, b.dataset, b.rows, b.lastRows);
        if (!pg) return;
        const r = await upsertRows({
          db, table: pg.table, keyColumns: pg.keyColumns, columns: pg.columns, batches: readStaged(db, refs[pgIndex], ctx.signal),
          runId: ctx.runId, signal: ctx.signal, check: ctx.config.check, lastGoodRows: list[pgIndex].lastRows, deleteMissing: true, fence, pipelineId: ctx.pipelineId,
        });
        ctx.log.info({ table: pg.table, ...r }, 'postgres mirror committed');
        ctx.event('published', `${pg.table}: mirror committed`, { table: pg.table, ...r });
      },
      whileLive: (swap) => whileAttemptLive(db.pool, fence, swap),
    }, built));
    // The state hashes (the builds were renamed), and any build of an abandoned epoch.
    await dropRunBuilds(redis, ctx.runId).catch((err: unknown) => ctx.log.warn({ err: String(err) }, 'could not drop leftover builds; they expire'));
    const published: Record<string, { key: string; rows: number; duplicates: number }> = {};
    let total = 0;
    ctx.config.datasets.forEach((ds, i) => {
      published[ds.name] = { key: results[i].key, rows: results[i].rows, duplicates: results[i].duplicates };
      total += results[i].rows;
      publishedEvent(ctx, results[i].key, results[i].rows);
    });
    ctx.reportRows({ in: total, out: total });
    return { sandbox: input.sandbox, datasets: published };
  } catch (err) {
    // An abandoned epoch's builds, or a refusal that retrying cannot change, are dropped;
    // after any other failure they stay for the next attempt to continue (or expire).
    if (err instanceof EpochMoved || err instanceof NonRetryableError) await Promise.all(builds.map((b) => b.drop().catch(() => {})));
    // A cancelled run's builds go too (a superseded attempt's stay: they are the live one's).
    else if (err instanceof StepAbortedError && err.reason === 'cancelled' && (await streamSourceState(db.pool, ctx.runId, ctx.stepKey))?.runStatus === 'cancelled') {
      await Promise.all(builds.map((b) => b.settle()));
      await dropRunBuilds(redis, ctx.runId).catch(() => {});
    }
    throw err;
  }
}

function lineCount(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) n++;
  return n;
}
