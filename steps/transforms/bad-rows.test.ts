import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listRejects } from '../../db/rejects';
import { insertRun } from '../../db/runs';
import { freshDatabase, silentLog } from '../../test/helpers';
import { queryTransformStep, type QueryConfig } from '../query-steps';
import type { Services } from '../services';
import { openStaging } from '../staging';
import { allowedRejects, badRowsPolicy } from './bad-rows';

/** The query transform under the bad-rows policy: row numbers per dataset, samples, limits. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase([{ id: 'q.test', workflow: 'bq-reference', description: 'test', cron: '0 3 * * *', timezone: 'UTC', config: {} }]);
});
afterAll(async () => db?.drop());

const countries = Array.from({ length: 250 }, (_, i) => JSON.stringify({ code: `C${i}`, name: `Country ${i}` }));
// The 10th airline has no name.
const airlines = Array.from({ length: 12 }, (_, i) => JSON.stringify(i === 9 ? { code: `A${i}` } : { code: `A${i}`, name: `Air ${i}` }));

async function run(badRows: QueryConfig['badRows']) {
  const runId = randomUUID();
  const stage = async (name: string, lines: string[]) => {
    const w = await openStaging(db, runId, `fetch.${name}`);
    await w.writeLines(lines);
    return w.close();
  };
  await insertRun(db.pool, { id: runId, pipelineId: 'q.test', trigger: 'manual', params: {}, exclusive: false, steps: [
    { key: 'fetch', position: 0, status: 'succeeded' }, { key: 'transform', position: 1, status: 'running', attempts: 1 }] });
  // transform streams from fetch's row (steps/stream.ts): here fetch has succeeded.
  const input = { sandbox: false, datasets: { countries: await stage('countries', countries), airlines: await stage('airlines', airlines) } };
  await db.pool.query(`update etl_run_steps set output = $2 where run_id = $1 and key = 'fetch'`, [runId, JSON.stringify(input)]);
  const config = {
    credential: 'x', pageSize: 1000, check: { allowEmpty: false, minFractionOfLast: 0.5 }, badRows,
    datasets: [
      { name: 'countries', dataset: 'bq:reference:countries', shape: 'hash', keyField: 'code', sql: 's', columns: { code: 'string', name: 'string' } },
      { name: 'airlines', dataset: 'bq:reference:airlines', shape: 'hash', keyField: 'code', sql: 's', columns: { code: 'string', name: 'string' } },
    ],
  } as QueryConfig;
  const ctx = {
    runId, pipelineId: 'q.test', stepKey: 'transform', attempt: 1, signal: new AbortController().signal, config, params: {},
    input,
    outputs: {}, checkpoint: null, saveCheckpoint: async () => {}, reportRows: () => {}, event: () => {}, progress: () => {}, log: silentLog,
    services: { db } as unknown as Services,
  } as unknown as Parameters<typeof queryTransformStep.run>[0];
  return { runId, result: queryTransformStep.run(ctx) };
}

describe('queryTransformStep bad rows', () => {
  it('default {max: 0}: the 10th airline fails the step as "airlines row 10", counted per dataset', async () => {
    const { runId, result } = await run(undefined);
    await expect(result).rejects.toThrow(/^1 row rejected, over the limit of 0 .*first: airlines row 10 \(code=A9\): field "name"/);
    const r = (await listRejects(db.pool, runId, 'transform'))!;
    expect(r).toMatchObject({ rowsRejected: 1, rejects: [{ dataset: 'bq:reference:airlines', row: 10, path: 'name', value: '{"code":"A9"}' }] });
  });

  it('{max: 1}: publishes the rest and reports the reject', async () => {
    const { runId, result } = await run({ max: 1 });
    const out = await result;
    expect(out).toMatchObject({ badRows: 1, datasets: { countries: { rows: 250 }, airlines: { rows: 11 } } });
    expect((await listRejects(db.pool, runId, 'transform'))!.rejects.map((x) => x.row)).toEqual([10]);
  });

  it('policy arithmetic: the larger of max and maxFraction of the rows read; skipBadRows is {maxFraction: 1}', () => {
    expect(badRowsPolicy({})).toEqual({ max: 0 });
    expect(badRowsPolicy({ skipBadRows: true })).toEqual({ maxFraction: 1 });
    expect(badRowsPolicy({ skipBadRows: true, badRows: { max: 3 } })).toEqual({ max: 3 });
    expect(allowedRejects({ max: 5, maxFraction: 0.01 }, 100)).toBe(5);
    expect(allowedRejects({ max: 5, maxFraction: 0.01 }, 10_000)).toBe(100);
    expect(allowedRejects({ maxFraction: 1 }, 7)).toBe(7);
  });
});
