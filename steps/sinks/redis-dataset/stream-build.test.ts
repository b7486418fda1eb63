import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StepAbortedError } from '../../../lib/errors';
import { REDIS_URL, uid } from '../../../test/helpers';
import { tmpKey } from './keys';
import { dropRunBuilds, streamBuild } from './stream-build';

/** The continuable build of the overlapped write against a real Redis: positions, owners. */
const PREFIX = uid('sbtest');
let redis: Redis;
beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2 });
});
afterAll(async () => {
  const keys = [...await redis.keys(`cache:${PREFIX}*`), ...await redis.keys(`etl:build*:${PREFIX}*`)];
  if (keys.length) await redis.unlink(...keys);
  await redis.quit();
});

let n = 0;
function target(shape: 'hash' | 'json') {
  const runId = `${PREFIX}-run${++n}`;
  const dataset = `${PREFIX}:ds${n}`;
  return { runId, dataset, shape, tmp: tmpKey(dataset, `${runId}.s1`), state: `etl:build:${runId}:s1` };
}
/** A chunk of `count` keyed lines of ~`size` bytes each, ids from `from`. */
const keyed = (from: number, count: number, size = 40) =>
  Buffer.from(Array.from({ length: count }, (_, i) => `"${from + i}"\t{"id":${from + i},"pad":"${'x'.repeat(size)}"}\n`).join(''));

describe('streamBuild', () => {
  it('loads each piece exactly once across attempts: a new attempt continues at the position, the old one is refused', async () => {
    const t = target('hash');
    const a1 = await streamBuild(redis, { ...t, attempt: 1 });
    // Chunks of ~300 KB: three 128 KB pieces each.
    const chunks = [keyed(0, 3_000, 80), keyed(3_000, 3_000, 80), keyed(6_000, 3_000, 80)];
    await a1.addChunk(0, chunks[0]);
    await a1.finish(); // its loads have landed (a hash's finish only reads the counts)
    // Attempt 2 takes over (a stall): it continues at chunk 1, piece 0.
    const a2 = await streamBuild(redis, { ...t, attempt: 2 });
    expect(a2.at).toEqual({ chunk: 1, piece: 0 });
    // Loads are pipelined: the refusal surfaces by the next send or the finish.
    await expect((async () => {
      await a1.addChunk(1, chunks[1]);
      await a1.finish();
    })()).rejects.toBeInstanceOf(StepAbortedError);
    await a2.addChunk(0, chunks[0]); // already loaded: nothing sent
    await a2.addChunk(1, chunks[1]);
    await a2.addChunk(2, chunks[2]);
    const built = await a2.finish();
    expect(built).toMatchObject({ rows: 9_000, size: 9_000, duplicates: 0 });
    expect(await redis.hlen(t.tmp)).toBe(9_000);
  });

  it('starts over when the build key is gone but its state is not (a publish renamed it before the step was recorded)', async () => {
    const t = target('hash');
    const a1 = await streamBuild(redis, { ...t, attempt: 1 });
    await a1.addChunk(0, keyed(0, 100));
    await a1.finish();
    await redis.rename(t.tmp, `${t.tmp}:published`); // what the swap does
    const a2 = await streamBuild(redis, { ...t, attempt: 2 });
    expect(a2.at).toEqual({ chunk: 0, piece: 0 });
    await a2.addChunk(0, keyed(0, 100));
    expect(await a2.finish()).toMatchObject({ rows: 100, size: 100, duplicates: 0 });
    await redis.unlink(`${t.tmp}:published`);
  });

  it('refuses a piece out of place (the position is checked in the script)', async () => {
    const t = target('hash');
    const b = await streamBuild(redis, { ...t, attempt: 1 });
    await expect((async () => {
      await b.addChunk(1, keyed(0, 10));
      await b.finish();
    })()).rejects.toThrow(/etl-pos: the build is at 0:0, not 1:0/);
  });

  it('starts over when Redis lost the state, and a JSON build is one array (an empty chunk moves the position only)', async () => {
    const t = target('json');
    const b = await streamBuild(redis, { ...t, attempt: 1 });
    await b.addChunk(0, Buffer.from('{"a":1}\n{"a":2}\n'));
    await b.addChunk(1, Buffer.alloc(0));
    await b.addChunk(2, Buffer.from('{"a":3}\n'));
    const built = await b.finish();
    expect(await redis.get(t.tmp)).toBe('[{"a":1},{"a":2},{"a":3}]');
    expect(built).toMatchObject({ rows: 3, size: 25, bytes: 25 });
    expect(await b.finish()).toMatchObject({ size: 25 }); // closes once
    await redis.unlink(t.state);
    const again = await streamBuild(redis, { ...t, attempt: 2 });
    expect(again.at).toEqual({ chunk: 0, piece: 0 });
    expect(await redis.exists(t.tmp)).toBe(0);
    await again.addChunk(0, Buffer.alloc(0));
    expect(await again.finish()).toMatchObject({ rows: 0, size: 2 });
    expect(await redis.get(t.tmp)).toBe('[]');
    await dropRunBuilds(redis, t.runId);
    expect(await redis.exists(t.tmp, t.state, `etl:builds:${t.runId}`)).toBe(0);
  });
});
