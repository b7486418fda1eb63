import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asyncOf, REDIS_URL, uid } from '../../../test/helpers';
import { NonRetryableError, StepAbortedError } from '../../../lib/errors';
import { datasetKey, fenceKey, metaKey, readDatasetMeta, TMP_TTL_MS, tmpKey, writeRedisDataset, writeRedisDatasets, type WriteRedisDatasetArgs } from './index';

// Real keys are cache:<dataset>; every dataset of this file lives under one random prefix.
const PREFIX = uid('sinktest');
let redis: Redis;
let reader: Redis;

beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2 });
  reader = new Redis(REDIS_URL, { maxRetriesPerRequest: 2 });
});

afterAll(async () => {
  const keys = await redis.keys(`cache:${PREFIX}*`);
  if (keys.length) await redis.del(...keys);
  await Promise.all([redis.quit(), reader.quit()]);
});

type Row = { id: string; v: number; name: string; n: number };
const row = (i: number, v: number): Row => ({ id: `id-${i}`, v, name: `contact ${i} "q" \\ ü`, n: i });

/** `count` rows in batches; yields to the event loop between batches so readers interleave. */
async function* rows(count: number, v: number, o: { batch?: number; from?: number; before?: (sent: number) => Promise<void> | void } = {}) {
  const size = o.batch ?? 500;
  for (let i = 0; i < count; i += size) {
    await o.before?.(i);
    await new Promise((r) => setImmediate(r));
    yield Array.from({ length: Math.min(size, count - i) }, (_, k) => row((o.from ?? 0) + i + k, v));
  }
}

let n = 0;
const ds = () => `${PREFIX}:ds${++n}`;
const base = (dataset: string, runId = `run-${++n}`) => ({ redis, dataset, runId, pipelineId: 'test.pipeline', keyField: 'id' });
const write = (a: Partial<WriteRedisDatasetArgs> & Pick<WriteRedisDatasetArgs, 'dataset' | 'batches'>) =>
  writeRedisDataset({ ...base(a.dataset), shape: 'hash', ...a });

/** Everything a reader could see of a dataset, byte for byte. */
async function snapshot(dataset: string) {
  return {
    // base64: vitest compares a large Buffer element by element, slowly.
    dump: (await redis.dumpBuffer(datasetKey(dataset)))?.toString('base64') ?? null,
    meta: await redis.get(metaKey(dataset)),
    tmp: await redis.keys(`${datasetKey(dataset)}:tmp:*`),
  };
}

describe('writeRedisDataset', () => {
  it('publishes staged keyed chunks (bytes) exactly as it publishes the same rows as objects', async () => {
    const list = [row(1, 1), { ...row(2, 1), id: 'with "quote" \\ and ü' }, row(3, 1), { ...row(4, 1), id: 'id-1' }];
    const keyed = list.map((r) => `${JSON.stringify(r.id)}\t${JSON.stringify(r)}\n`).join('');
    const bytes = Buffer.from(keyed);
    // Split mid-way at a line boundary: chunks hold whole lines.
    const cut = bytes.indexOf(0x0a, bytes.length / 2) + 1;
    const chunks = () => asyncOf([bytes.subarray(0, cut), bytes.subarray(cut)]);
    const [a, b] = [ds(), ds()];
    const viaChunks = await writeRedisDataset({ ...base(a), shape: 'hash', chunks: chunks() });
    const viaRows = await write({ dataset: b, batches: asyncOf([list]) });
    expect(viaChunks).toMatchObject({ rows: 3, duplicates: 1, bytes: viaRows.bytes });
    expect((await snapshot(a)).dump).toBe((await snapshot(b)).dump);
    expect(JSON.parse((await redis.hget(viaChunks.key, 'with "quote" \\ and ü'))!)).toEqual(list[1]);

    // A JSON array from chunks of JSON lines.
    const c = ds();
    const json = await writeRedisDataset({ ...base(c), shape: 'json', chunks: asyncOf([Buffer.from(list.map((r) => `${JSON.stringify(r)}\n`).join(''))]) });
    expect(json.rows).toBe(4);
    expect(JSON.parse((await redis.get(json.key))!)).toEqual(list);

    await expect(writeRedisDataset({ ...base(ds()), shape: 'hash', chunks: asyncOf([Buffer.from('""\t{}\n')]) }))
      .rejects.toBeInstanceOf(NonRetryableError);
  });

  it('names the row of a bad key in a staged chunk, wherever it falls among the pieces in flight', async () => {
    const value = JSON.stringify({ pad: 'p'.repeat(100) });
    const bad = (line: string, at: number) => Buffer.from(Array.from({ length: 6_000 }, (_, i) => (i === at ? line : `"k${i}"\t${value}`)).join('\n') + '\n');
    const run = (chunk: Buffer) => writeRedisDataset({ ...base(ds()), shape: 'hash', chunks: asyncOf([chunk]) });
    for (const at of [0, 3_000, 5_999]) {
      const err = await run(bad(`""\t${value}`, at)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NonRetryableError);
      expect((err as Error).message).toBe(`row ${at + 1} has an empty key: cannot be a hash field`);
    }
    // A key that is not valid Unicode (a lone surrogate) is refused for good, not retried.
    const err = await run(bad(`"\\ud800"\t${value}`, 4_000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as Error).message).toMatch(/^row 4001 has a key that is not a JSON string/);
    // Nothing is left behind by the failed builds.
    expect(await redis.keys(`cache:${PREFIX}:*:tmp:*`)).toEqual([]);
  });

  it('publishes a hash: one field per row, meta beside it, no TTL, no build key left', async () => {
    const dataset = ds();
    const before = Date.now();
    const r = await write({ dataset, batches: rows(2_500, 1), runId: 'run-hash' });
    expect(r).toMatchObject({ key: `cache:${dataset}`, rows: 2_500, duplicates: 0 });
    expect(r.bytes).toBeGreaterThan(2_500 * 50);
    expect(await redis.hlen(r.key)).toBe(2_500);
    expect(JSON.parse((await redis.hget(r.key, 'id-1234'))!)).toEqual(row(1234, 1));
    expect(await redis.pttl(r.key)).toBe(-1);
    const meta = JSON.parse((await redis.get(metaKey(dataset)))!);
    expect(meta).toEqual({ runId: 'run-hash', pipelineId: 'test.pipeline', rows: 2_500, updatedAt: expect.any(String), shape: 'hash', bytes: r.bytes });
    expect(Date.parse(meta.updatedAt)).toBeGreaterThanOrEqual(before - 1);
    expect(await readDatasetMeta(redis, dataset)).toEqual(meta);
    expect((await snapshot(dataset)).tmp).toEqual([]);
  });

  it('publishes a JSON array built from several APPENDs', async () => {
    const dataset = ds();
    const r = await write({ dataset, shape: 'json', keyField: undefined, batches: rows(12_000, 1) });
    const value = (await redis.get(r.key))!;
    expect(value.length).toBeGreaterThan(512 * 1024); // more than one chunk
    expect(r.bytes).toBe(Buffer.byteLength(value));
    const parsed = JSON.parse(value) as Row[];
    expect(parsed).toHaveLength(12_000);
    expect(parsed[11_999]).toEqual(row(11_999, 1));
    expect(await readDatasetMeta(redis, dataset)).toMatchObject({ rows: 12_000, shape: 'json' });
  });

  it('hash: a repeated key keeps the last row and is counted', async () => {
    const dataset = ds();
    const dup = () => asyncOf([[row(1, 1), row(2, 1), row(1, 2)], [row(2, 3), row(3, 1)]]);
    const r = await write({ dataset, batches: dup() });
    expect(r).toMatchObject({ rows: 3, duplicates: 2 });
    expect(JSON.parse((await redis.hget(r.key, 'id-1'))!).v).toBe(2);
    expect(JSON.parse((await redis.hget(r.key, 'id-2'))!).v).toBe(3);
    expect((await readDatasetMeta(redis, dataset))!.rows).toBe(3);
  });

  it('a reader polling during a rewrite sees the old or the new full version, never a mix', async () => {
    const dataset = ds();
    const key = datasetKey(dataset);
    await write({ dataset, batches: rows(20_000, 1) });
    const seen = new Map<string, number>();
    let writing = true;
    // Polls until one sample after the writer returned, so the new version is always seen too.
    const poll = (async () => {
      for (let last = false; !last;) {
        last = !writing;
        const res = (await reader.multi().hlen(key).hget(key, 'id-0').hget(key, 'id-29999').exec())!;
        const [len, first, end] = res.map(([, v]) => v) as [number, string | null, string | null];
        const state = `${len}/${first && JSON.parse(first).v}/${end && JSON.parse(end).v}`;
        seen.set(state, (seen.get(state) ?? 0) + 1);
      }
    })();
    await write({ dataset, batches: rows(30_000, 2, { batch: 250 }), fieldsPerCommand: 250, commandsPerRound: 2 });
    writing = false;
    await poll;
    expect([...seen.keys()].sort()).toEqual(['20000/1/null', '30000/2/2']);
    expect(seen.get('20000/1/null')).toBeGreaterThan(10); // the reader really polled during the build
  });

  it('a JSON reader during a rewrite always parses one complete version', async () => {
    const dataset = ds();
    const key = datasetKey(dataset);
    await write({ dataset, shape: 'json', batches: rows(1_000, 1) });
    const seen = new Set<string>();
    let writing = true;
    const poll = (async () => {
      for (let last = false; !last;) {
        last = !writing;
        const parsed = JSON.parse((await reader.get(key))!) as Row[];
        seen.add(`${parsed.length}/${[...new Set(parsed.map((p) => p.v))].join(',')}`);
      }
    })();
    await write({ dataset, shape: 'json', batches: rows(12_000, 2, { batch: 200 }) });
    writing = false;
    await poll;
    expect([...seen].sort()).toEqual(['1000/1', '12000/2']);
  });

  for (const shape of ['hash', 'json'] as const) {
    it(`${shape}: a failure mid-stream leaves the published dataset and meta byte-for-byte unchanged`, async () => {
      const dataset = ds();
      await write({ dataset, shape, batches: rows(5_000, 1) });
      const before = await snapshot(dataset);
      const runId = 'run-fails';
      let tmpExisted = 0;
      const failing = rows(40_000, 2, {
        before: async (sent) => {
          if (sent < 20_000) return;
          tmpExisted = await redis.exists(tmpKey(dataset, runId));
          throw new Error('source broke at row 20000');
        },
      });
      await expect(write({ dataset, shape, runId, batches: failing })).rejects.toThrow('source broke at row 20000');
      expect(tmpExisted).toBe(1); // the failure really happened mid-build
      expect(await snapshot(dataset)).toEqual(before);
    });

    it(`${shape}: an abort mid-stream leaves everything unchanged and rejects with the abort reason`, async () => {
      const dataset = ds();
      await write({ dataset, shape, batches: rows(5_000, 1) });
      const before = await snapshot(dataset);
      const ac = new AbortController();
      const reason = new Error('run cancelled');
      const batches = rows(40_000, 2, { before: (sent) => { if (sent === 15_000) ac.abort(reason); } });
      await expect(write({ dataset, shape, batches, signal: ac.signal })).rejects.toBe(reason);
      expect(await snapshot(dataset)).toEqual(before);
    });
  }

  it('does not publish a build key that was changed behind its back', async () => {
    const dataset = ds();
    await write({ dataset, batches: rows(3, 1) });
    const before = await snapshot(dataset);
    const runId = 'run-tampered';
    async function* tampered() {
      yield [row(1, 2), row(2, 2), row(3, 2)];
      await redis.hset(tmpKey(dataset, runId), 'intruder', '{}');
    }
    await expect(write({ dataset, runId, batches: tampered(), fieldsPerCommand: 1, commandsPerRound: 1 }))
      .rejects.toThrow(/build key .* holds 4, expected 3/);
    expect(await snapshot(dataset)).toEqual(before);
  });

  it('gives the build key a TTL so an abandoned build expires', async () => {
    const dataset = ds();
    const runId = 'run-ttl';
    let ttl = 0;
    const batches = rows(20_000, 1, { before: async (sent) => { if (sent === 18_000) ttl = await redis.pttl(tmpKey(dataset, runId)); } });
    await write({ dataset, runId, batches });
    expect(ttl).toBeGreaterThan(TMP_TTL_MS - 60_000);
    expect(ttl).toBeLessThanOrEqual(TMP_TTL_MS);
  });

  it('refuses to publish 0 rows by default; nothing is written', async () => {
    const dataset = ds();
    await expect(write({ dataset, batches: rows(0, 1) })).rejects.toThrow(/0 rows: refusing to publish an empty dataset/);
    expect(await snapshot(dataset)).toEqual({ dump: null, meta: null, tmp: [] });

    await write({ dataset, shape: 'json', batches: rows(10, 1) });
    const before = await snapshot(dataset);
    await expect(write({ dataset, shape: 'json', batches: rows(0, 1) })).rejects.toBeInstanceOf(NonRetryableError);
    expect(await snapshot(dataset)).toEqual(before);
  });

  it('with allowEmpty publishes 0 rows: a hash is deleted, a JSON array becomes []', async () => {
    const h = ds();
    await write({ dataset: h, batches: rows(100, 1) });
    const r = await write({ dataset: h, batches: rows(0, 1), check: { allowEmpty: true }, runId: 'run-empty' });
    expect(r).toMatchObject({ rows: 0, bytes: 0 });
    expect(await redis.exists(datasetKey(h))).toBe(0);
    expect(await readDatasetMeta(redis, h)).toMatchObject({ rows: 0, runId: 'run-empty', shape: 'hash' });
    expect((await snapshot(h)).tmp).toEqual([]);

    const j = ds();
    await write({ dataset: j, shape: 'json', batches: rows(100, 1) });
    await write({ dataset: j, shape: 'json', batches: rows(0, 1), check: { allowEmpty: true } });
    expect(await redis.get(datasetKey(j))).toBe('[]');
    expect((await readDatasetMeta(redis, j))!.rows).toBe(0);
  });

  it('refuses a drop below 50% of the rows published now, unless the policy allows it', async () => {
    const dataset = ds();
    await write({ dataset, batches: rows(1_000, 1) });
    const before = await snapshot(dataset);
    await expect(write({ dataset, batches: rows(499, 2) })).rejects.toThrow("499 rows is less than 50% of the last good run's 1,000 rows");
    expect(await snapshot(dataset)).toEqual(before);
    const r = await write({ dataset, batches: rows(499, 2), check: { minFractionOfLast: 0 } });
    expect(r.rows).toBe(499);
    expect(await redis.hlen(datasetKey(dataset))).toBe(499);
  });

  it('rejects bad input clearly and cleans up', async () => {
    const dataset = ds();
    await expect(write({ dataset, keyField: undefined, batches: rows(1, 1) })).rejects.toThrow(/keyField is required/);
    await expect(write({ dataset: 'x:meta', batches: rows(1, 1) })).rejects.toThrow(/invalid dataset name/);
    const noKey = () => asyncOf([[row(1, 1)], [{ name: 'no id' }]]);
    await expect(write({ dataset, batches: noKey(), fieldsPerCommand: 1, commandsPerRound: 1 })).rejects.toThrow('row 2 has no id');
    expect(await snapshot(dataset)).toEqual({ dump: null, meta: null, tmp: [] });
  });
});

describe('writeRedisDatasets: all datasets of a run together', () => {
  const many = (names: string[], o: { runId: string; attempt?: number; counts: number[]; v: number }) => writeRedisDatasets({
    redis, runId: o.runId, attempt: o.attempt, pipelineId: 'test.pipeline',
    datasets: names.map((dataset, i) => ({ dataset, shape: 'hash' as const, keyField: 'id', batches: rows(o.counts[i], o.v) })),
  });

  it('one refused data check publishes none of them, and leaves no build key', async () => {
    const names = [ds(), ds(), ds()];
    await many(names, { runId: 'r1', counts: [100, 200, 300], v: 1 });
    const before = await Promise.all(names.map(snapshot));
    const err = await many(names, { runId: 'r2', counts: [100, 200, 100], v: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as Error).message).toBe(`dataset ${names[2]}: 100 rows is less than 50% of the last good run's 300 rows: refusing to publish (if the drop is genuine, lower minFractionOfLast, or set it to 0 to disable the check)`);
    expect(await Promise.all(names.map(snapshot))).toEqual(before);
    await many(names, { runId: 'r3', counts: [100, 200, 300], v: 3 });
    expect((await redis.mget(...names.map(metaKey))).map((m) => JSON.parse(m!).runId)).toEqual(['r3', 'r3', 'r3']);
  });

  it('the swap script refuses an attempt older than one that already published', async () => {
    const names = [ds(), ds()];
    const runId = `fence-${uid('r')}`;
    try {
      await many(names, { runId, attempt: 2, counts: [10, 10], v: 2 });
      const before = await Promise.all(names.map(snapshot));
      const err = await many(names, { runId, attempt: 1, counts: [20, 20], v: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StepAbortedError);
      expect((err as Error).message).toBe('not publishing: attempt 1 was superseded by attempt 2');
      expect(await Promise.all(names.map(snapshot))).toEqual(before);
      // The same or a later attempt may publish (a retry converges).
      await many(names, { runId, attempt: 3, counts: [30, 30], v: 3 });
      expect(await redis.hlen(datasetKey(names[0]))).toBe(30);
      expect(await redis.get(fenceKey(runId, 'write'))).toBe('3');
    } finally {
      await redis.unlink(fenceKey(runId, 'write'));
    }
  });
});
