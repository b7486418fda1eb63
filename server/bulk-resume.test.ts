import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditPage, BulkResumeResult } from './schemas';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from './testing';

/** SPEC §13: superseded runs are not resumed or retried without force; bulk resume picks
 *  the newest non-superseded failed run per pipeline, and its dry run changes nothing. */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('sup'), demoSeed('bulk.a'), demoSeed('bulk.b')] });
});
afterAll(async () => t?.close());
const api = (path: string) => `/api/etl${path}`;

async function failedRun(pipeline: string): Promise<string> {
  await t.h.redis.set(`${t.h.prefix}:fail:transform`, '1');
  try {
    return await t.triggerAndWait(pipeline, 'failed');
  } finally {
    await t.h.redis.del(`${t.h.prefix}:fail:transform`);
  }
}
const statusOf = async (runId: string) =>
  (await t.h.db.pool.query('select status, generation from etl_runs where id = $1', [runId])).rows[0];

describe('superseded runs', () => {
  it('an older failed run cannot be resumed or retried over a newer success without force', async () => {
    const old = await failedRun('sup');
    const newer = await t.triggerAndWait('sup', 'succeeded');
    const resume = await t.call('POST', api(`/runs/${old}/resume`));
    expect(resume).toMatchObject({ status: 409, body: { error: { code: 'superseded', details: { supersededBy: newer } } } });
    expect((await t.call('POST', api(`/runs/${old}/steps/transform/retry`))).body.error.code).toBe('superseded');
    expect((await t.call('POST', api(`/runs/${old}/resume`), { body: { force: false } })).status).toBe(409);
    expect(await statusOf(old)).toMatchObject({ status: 'failed', generation: 0 });

    expect(await t.call('POST', api(`/runs/${old}/resume`), { body: { force: true } })).toMatchObject({ status: 202, body: { runId: old } });
    await t.h.waitRun(old, 'succeeded');
    const audit = AuditPage.parse((await t.call('GET', api('/audit?limit=5'))).body);
    expect(audit.entries.find((e) => e.runId === old && e.action === 'run.resume')?.details).toEqual({ force: true });
  });
});

describe('POST /runs/resume', () => {
  it('dryRun changes nothing; then only the newest failed run per pipeline is resumed', async () => {
    const since = new Date(Date.now() - 1).toISOString();
    const a1 = await failedRun('bulk.a');
    const a2 = await failedRun('bulk.a');
    const b1 = await failedRun('bulk.b');
    const b2 = await t.triggerAndWait('bulk.b', 'succeeded'); // supersedes b1

    const dry = await t.call('POST', api('/runs/resume'), { body: { since, dryRun: true } });
    expect(dry.status).toBe(200);
    const d = BulkResumeResult.parse(dry.body);
    expect(d).toMatchObject({ matched: 3, resumed: [a2], dryRun: true });
    expect(d.skipped).toEqual(expect.arrayContaining([
      { runId: a1, pipelineId: 'bulk.a', reason: 'not_newest' },
      { runId: b1, pipelineId: 'bulk.b', reason: 'superseded', supersededBy: b2 },
    ]));
    for (const id of [a1, a2, b1]) expect(await statusOf(id)).toMatchObject({ status: 'failed', generation: 0 });

    const real = BulkResumeResult.parse((await t.call('POST', api('/runs/resume'), { body: { since, status: ['failed'] } })).body);
    expect(real).toMatchObject({ matched: 3, resumed: [a2], dryRun: false });
    await t.h.waitRun(a2, 'succeeded');
    expect(await statusOf(a1)).toMatchObject({ status: 'failed', generation: 0 });
    expect(await statusOf(b1)).toMatchObject({ status: 'failed', generation: 0 });
    const audit = AuditPage.parse((await t.call('GET', api('/audit?limit=10'))).body);
    expect(audit.entries.filter((e) => e.action === 'run.resume' && e.details?.['bulk']).map((e) => e.runId)).toEqual([a2]);

    // a2 succeeded after a1 was created: a1 is superseded now, and a pipeline filter applies.
    const again = BulkResumeResult.parse((await t.call('POST', api('/runs/resume'), { body: { pipelineId: 'bulk.a', dryRun: true } })).body);
    expect(again).toMatchObject({ matched: 1, resumed: [], skipped: [{ runId: a1, reason: 'superseded', supersededBy: a2 }] });
  });

  it('needs the operator role, dry run included; refuses bad filters', async () => {
    const viewer = await t.addSession(JSON.stringify({ user: { id: 'v1', role: 'viewer' } }));
    const r = await t.call('POST', api('/runs/resume'), { auth: 'none', headers: { cookie: `${SESSION_COOKIE}=${viewer}`, origin: 'http://localhost' }, body: { dryRun: true } });
    expect(r).toMatchObject({ status: 403, body: { error: { code: 'forbidden' } } });
    for (const body of [{ status: ['succeeded'] }, { status: [] }, { since: 'yesterday' }, { dryRun: 'yes' }, { pipelineId: '../x' }, { extra: 1 }]) {
      expect((await t.call('POST', api('/runs/resume'), { body })).status, JSON.stringify(body)).toBe(400);
    }
  });
});
