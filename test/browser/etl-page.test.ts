import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoSeed } from '../../server/testing';
import { recordRejects } from '../../db/rejects';
import { waitFor } from '../helpers';
import {
  bodyOverflowPx, CHROMIUM, clickAndConfirm, hasChromium, RUN_MS, runNowAndOpen, screenshot, startPageEnv, UI_MS,
  waitLive, waitStatus, type PageEnv,
} from './page-env';

/**
 * The operator's /etl page end to end in a real Chromium: token login, Run now watched
 * live over SSE, the drilldown, a failing step retried, resume, cancel, rerun from a step,
 * schedule editing and the enable switch, and a phone-width smoke check. Every action goes
 * through the page's own buttons and confirm dialog; Postgres is checked behind it.
 */

const TEST_MS = 120_000;
const seeds = [
  // transformMs keeps the run busy past the table's post-trigger reload, so reaching
  // "succeeded" in the table can only come from a live event.
  demoSeed('live', { transformMs: 3_000 }),
  demoSeed('flaky'),
  demoSeed('slow', { transformMs: 30_000 }),
  demoSeed('sched'),
];

/** Hash navigation inside the page (no reload); resolves once the router has run. */
const go = (page: Page, hash: string) =>
  page.evaluate((h) => new Promise<void>((resolve) => {
    if (location.hash === h) return resolve();
    window.addEventListener('hashchange', () => resolve(), { once: true });
    location.hash = h;
  }), hash);

/** Set once; still set later means the page was never reloaded (updates came over SSE). */
const markDocument = (page: Page) => page.evaluate(() => { (window as unknown as { __etlDoc: boolean }).__etlDoc = true; });
const sameDocument = (page: Page) => page.evaluate(() => (window as unknown as { __etlDoc?: boolean }).__etlDoc === true);

// On a developer's machine without Chromium the suite is skipped and says why; in CI a
// missing browser is a failure, never a silent skip.
if (process.env.CI && !hasChromium) {
  describe('/etl page in a real browser', () => {
    it(`needs Chromium at ${CHROMIUM} (CI installs it: .ci/run)`, () => {
      expect.fail(`no Chromium at ${CHROMIUM}`);
    });
  });
}
const suite = hasChromium ? describe : describe.skip;

suite(hasChromium ? '/etl page in a real browser' : `/etl page in a real browser (skipped: no Chromium at ${CHROMIUM})`, () => {
  let env: PageEnv;
  let context: BrowserContext;
  let page: Page;
  let failFlag: string;
  let firstRunId: string;
  let retriedRunId: string;

  beforeAll(async () => {
    env = await startPageEnv(seeds);
    failFlag = `${env.t.h.prefix}:fail:transform`;
    ({ context, page } = await env.newLoggedInPage({ width: 1280, height: 800 }));
  }, TEST_MS);

  afterAll(async () => {
    await env?.t.h.redis.del(failFlag).catch(() => {});
    await context?.close().catch(() => {});
    await env?.close();
  }, TEST_MS);

  it('logs in with the API token and lists the pipelines', async () => {
    for (const s of seeds) await page.getByTestId(`pipeline-row-${s.id}`).waitFor();
    expect(await page.evaluate(() => localStorage.getItem('etl.apiToken'))).toBe(env.t.token);
    expect(await page.getByTestId('live-indicator').textContent()).toBe('live');
    await markDocument(page);
  });

  it('Run now: the table follows the run to "succeeded" live, then the drilldown shows it', async () => {
    const answer = page.waitForResponse((r) => r.url().endsWith('/pipelines/live/trigger'));
    await clickAndConfirm(page, 'run-now-live');
    firstRunId = ((await (await answer).json()) as { runId: string }).runId;
    const lastRun = `[data-testid="last-run-live"] .pill`;
    await page.waitForSelector(`${lastRun}[data-status="queued"], ${lastRun}[data-status="running"]`, { timeout: UI_MS });
    await page.waitForSelector(`${lastRun}[data-status="succeeded"]`, { timeout: RUN_MS });
    expect(await sameDocument(page)).toBe(true);
    await screenshot(page, 'pipelines-1280x800.png');

    await page.getByTestId('last-run-live').click();
    await waitStatus(page, 'run-status', 'succeeded', UI_MS);
    for (const k of ['fetch', 'transform', 'write']) await waitStatus(page, `step-status-${k}`, 'succeeded', UI_MS);
    expect(await page.getByTestId('run-header').textContent()).toContain(firstRunId);
  }, TEST_MS);

  it('a failing step shows live; Retry step completes the run without re-running earlier steps', async () => {
    await env.t.h.redis.set(failFlag, '1');
    await go(page, '#/pipelines/flaky');
    retriedRunId = await runNowAndOpen(page, 'flaky');
    await waitStatus(page, 'run-status', 'failed');
    await waitStatus(page, 'step-status-transform', 'failed', UI_MS);
    await waitStatus(page, 'step-status-fetch', 'succeeded', UI_MS);
    expect(await page.getByTestId('step-error-transform').textContent()).toContain('transform told to fail');

    await env.t.h.redis.del(failFlag);
    await clickAndConfirm(page, 'retry-step-transform');
    await waitStatus(page, 'run-status', 'succeeded');
    for (const k of ['fetch', 'transform', 'write']) await waitStatus(page, `step-status-${k}`, 'succeeded', UI_MS);
    expect(await env.t.h.execs(retriedRunId)).toMatchObject({ fetch: 1, write: 1 });
    expect(await sameDocument(page)).toBe(true);

    await page.locator('[data-testid="attempts-transform"] summary').click();
    await page.locator('[data-testid="attempts-transform"] table').waitFor();
    await screenshot(page, 'run-1280x800.png');
  }, TEST_MS);

  it('Resume turns a failed run into a succeeded one', async () => {
    await env.t.h.redis.set(failFlag, '1');
    await go(page, '#/pipelines/flaky');
    const runId = await runNowAndOpen(page, 'flaky');
    await waitStatus(page, 'run-status', 'failed');
    await env.t.h.redis.del(failFlag);
    await clickAndConfirm(page, 'resume-run');
    await waitStatus(page, 'run-status', 'succeeded');
    expect((await env.t.h.run(runId)).status).toBe('succeeded');
    expect(await env.t.h.execs(runId)).toMatchObject({ fetch: 1, write: 1 });
  }, TEST_MS);

  it('Cancel stops a slow run: its running step is aborted', async () => {
    await go(page, '#/pipelines/slow');
    const runId = await runNowAndOpen(page, 'slow');
    await waitStatus(page, 'step-status-transform', 'running');
    await clickAndConfirm(page, 'cancel-run');
    await waitStatus(page, 'run-status', 'cancelled');
    await page.getByTestId('resume-run').waitFor();
    await waitFor(() => env.t.h.redis.exists(`${env.t.h.prefix}:aborted:${runId}`), { timeoutMs: UI_MS, what: 'the transform step to see the abort' });
    expect((await env.t.h.run(runId)).steps.find((s) => s.key === 'write')?.status).toBe('cancelled');
  }, TEST_MS);

  it('Rerun from here opens a new run that reuses the checkpoint and succeeds', async () => {
    await go(page, `#/runs/${firstRunId}`);
    await waitStatus(page, 'run-status', 'succeeded', UI_MS);
    await clickAndConfirm(page, 'rerun-from-transform');
    await page.waitForFunction((old) => location.hash.startsWith('#/runs/') && location.hash !== `#/runs/${old}`, firstRunId, { timeout: UI_MS });
    const newRunId = decodeURIComponent((await page.evaluate(() => location.hash)).slice('#/runs/'.length));
    await waitStatus(page, 'run-status', 'succeeded');
    expect(await page.getByTestId('parent-run-link').getAttribute('title')).toBe(firstRunId);
    const rerun = await env.t.h.run(newRunId);
    expect(rerun.parentRunId).toBe(firstRunId);
    expect(await env.t.h.execs(newRunId)).toMatchObject({ fetch: 0, transform: 1, write: 1 });
  }, TEST_MS);

  it('schedule editing: invalid cron or zone shows an error, a valid one is saved', async () => {
    await go(page, '#/');
    const cron = page.getByTestId('cron-input-sched');
    const tz = page.getByTestId('tz-input-sched');
    const save = page.getByTestId('save-cron-sched');
    const msg = page.getByTestId('cron-error-sched');
    const saved = async () => (await env.t.h.db.pool.query('select cron, timezone, enabled from etl_pipelines where id = $1', ['sched'])).rows[0];

    await cron.fill('every day');
    expect(await msg.textContent()).toMatch(/expected 5 fields/i);
    expect(await save.isDisabled()).toBe(true);
    await cron.fill('* * * * * *');
    expect(await msg.textContent()).toMatch(/seconds are not supported/i);
    expect(await save.isDisabled()).toBe(true);

    // Passes the page's quick check; the server is the authority and refuses it.
    await cron.fill('99 * * * *');
    const answer = page.waitForResponse((r) => r.url().endsWith('/pipelines/sched/cron'));
    await save.click();
    expect((await answer).status()).toBe(400);
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid="cron-error-sched"]');
      return !!el && el.classList.contains('error') && /invalid cron/i.test(el.textContent ?? '');
    }, undefined, { timeout: UI_MS });
    await page.locator('[data-testid="toast"][data-kind="error"]', { hasText: 'Schedule not saved' }).waitFor();
    expect(await saved()).toMatchObject({ cron: '* * * * *', timezone: 'UTC' });

    await cron.fill('30 4 * * *');
    await tz.fill('Mars/Olympus');
    expect(await msg.textContent()).toMatch(/unknown time zone/i);
    expect(await save.isDisabled()).toBe(true);

    await tz.fill('Europe/Kyiv');
    expect(await msg.textContent()).toBe('');
    await save.click();
    await page.locator('[data-testid="toast"][data-kind="ok"]', { hasText: 'Schedule of sched saved' }).waitFor();
    expect(await saved()).toMatchObject({ cron: '30 4 * * *', timezone: 'Europe/Kyiv' });
    expect(await cron.inputValue()).toBe('30 4 * * *');
  }, TEST_MS);

  it('the enable switch turns the schedule on and off', async () => {
    const toggle = page.getByTestId('toggle-enabled-sched');
    const enabled = async () => (await env.t.h.db.pool.query('select enabled from etl_pipelines where id = $1', ['sched'])).rows[0].enabled;
    expect(await toggle.isChecked()).toBe(false);
    await toggle.click();
    await page.locator('[data-testid="toast"][data-kind="ok"]', { hasText: 'sched enabled' }).waitFor();
    expect(await toggle.isChecked()).toBe(true);
    expect(await enabled()).toBe(true);
    expect(await page.getByTestId('pipeline-row-sched').textContent()).not.toContain('Paused');

    await toggle.click();
    await page.locator('[data-testid="toast"][data-kind="ok"]', { hasText: 'sched disabled' }).waitFor();
    expect(await toggle.isChecked()).toBe(false);
    expect(await enabled()).toBe(false);
    expect(await sameDocument(page)).toBe(true);
  }, TEST_MS);

  it('rejected rows under the step, the Datasets view and the stale marker on the pipeline row', async () => {
    // Rejects as the query transform records them (test/bad-rows.test.ts makes real ones).
    await recordRejects(env.t.h.db.pool, { runId: firstRunId, stepKey: 'transform', total: 3, samples: [
      { dataset: 'demo:contacts', row: 18, page: 1, reason: 'malformed Yespo contact at row 18 (id "abc"): id: expected an integer id', path: 'id', value: '{"id":"abc","channels":[]}' },
      { dataset: 'demo:contacts', row: 1203, page: 3, reason: 'malformed Yespo contact at row 1203 (id 1203): channels: expected array', path: 'channels', value: '{"id":1203}' },
    ] });
    // The api's read cache may hold the run up to 1 s (no event says it changed): wait until
    // the API itself shows the rejects, then open the page.
    await waitFor(async () => {
      const r = await fetch(`${env.base}/api/etl/runs/${firstRunId}`, { headers: { authorization: `Bearer ${env.t.token}` } });
      return ((await r.json()) as { run: { steps: { key: string; rowsRejected?: number }[] } }).run.steps.find((x) => x.key === 'transform')?.rowsRejected === 3;
    }, { what: 'the API to show 3 rejected rows' });
    await go(page, `#/runs/${firstRunId}`);
    await page.getByTestId('step-rejected-transform').waitFor();
    expect(await page.getByTestId('step-rejected-transform').textContent()).toBe('3 rejected');
    await page.locator('[data-testid="rejects-transform"] summary').click();
    await page.getByTestId('rejects-table').waitFor();
    expect(await page.getByTestId('reject-row-18').textContent()).toContain('expected an integer id');
    expect(await page.getByTestId('reject-row-1203').textContent()).toContain('channels');
    expect(await page.getByTestId('rejects-transform').textContent()).toContain('Showing the first 2 of 3');
    await screenshot(page, 'rejects-1280x800.png'); // closes the toasts first
    await page.screenshot({ path: '/tmp/etl-rejects-1280x800.png', fullPage: true });

    const p = env.t.h.prefix;
    const ago = (s: number) => new Date(Date.now() - s * 1000).toISOString();
    await env.t.h.setConfig('sched', { dataset: `${p}:sched` });
    await env.t.h.setConfig('flaky', { dataset: `${p}:flaky`, freshness: { maxAgeSeconds: 86_400 } });
    await env.t.h.setConfig('slow', { datasets: [{ dataset: `${p}:slow`, shape: 'json' }] });
    await env.t.h.redis.set(`cache:${p}:sched:meta`, JSON.stringify({ runId: firstRunId, pipelineId: 'sched', rows: 1234, updatedAt: ago(40 * 86_400) }));
    await env.t.h.redis.set(`cache:${p}:flaky:meta`, JSON.stringify({ runId: retriedRunId, pipelineId: 'flaky', rows: 42, updatedAt: ago(60) }));
    try {
      await go(page, '#/datasets');
      await page.getByTestId('datasets-table').waitFor();
      // One tab is current: Datasets, not Pipelines as well.
      expect(await page.locator('.topnav a[aria-current="page"]').evaluateAll((as) => as.map((a) => a.textContent))).toEqual(['Datasets']);
      expect(await page.getByTestId(`dataset-status-${p}:sched`).textContent()).toBe('stale');
      expect(await page.getByTestId(`dataset-reason-${p}:sched`).textContent()).toContain('pipeline disabled');
      expect(await page.getByTestId(`dataset-status-${p}:flaky`).textContent()).toBe('fresh');
      expect(await page.getByTestId(`dataset-status-${p}:slow`).textContent()).toBe('never');
      expect(await page.getByTestId(`dataset-row-${p}:sched`).textContent()).toContain('1,234');
      await screenshot(page, 'datasets-1280x800.png');
      await page.getByTestId(`dataset-run-${p}:flaky`).click();
      await page.getByTestId('run-status').waitFor();
      expect(page.url()).toContain(`#/runs/${retriedRunId}`);

      await page.getByTestId('nav-pipelines').click();
      await page.getByTestId('stale-sched').waitFor();
      expect(await page.getByTestId('stale-sched').textContent()).toBe('stale');
      expect(await page.getByTestId('stale-slow').textContent()).toBe('never published');
      expect(await page.getByTestId('stale-flaky').count()).toBe(0);
      await screenshot(page, 'pipelines-stale-1280x800.png');
      await page.screenshot({ path: '/tmp/etl-pipelines-stale-1280x800.png', fullPage: true });
    } finally {
      for (const id of ['sched', 'flaky', 'slow']) await env.t.h.setConfig(id, id === 'slow' ? { transformMs: 30_000 } : {});
      await env.t.h.redis.del(`cache:${p}:sched:meta`, `cache:${p}:flaky:meta`);
    }
  }, TEST_MS);

  it('on a 390 px phone the table and a drilldown fit the screen width', async () => {
    const phone = await env.newLoggedInPage({ width: 390, height: 844 });
    try {
      const p = phone.page;
      await p.getByTestId('pipeline-row-sched').waitFor();
      expect(await bodyOverflowPx(p)).toBeLessThanOrEqual(0);
      await screenshot(p, 'pipelines-390x844.png');

      await go(p, `#/runs/${retriedRunId}`);
      await waitStatus(p, 'run-status', 'succeeded', UI_MS);
      await p.locator('[data-testid="attempts-transform"] summary').click();
      await p.locator('[data-testid="attempts-transform"] table').waitFor();
      await waitLive(p);
      expect(await bodyOverflowPx(p)).toBeLessThanOrEqual(0);
      await screenshot(p, 'run-390x844.png');
    } finally {
      await phone.context.close();
    }
  }, TEST_MS);
});

/**
 * The operator parts of SPEC §13 and §14 in a real Chromium: "Resume failed runs" with its
 * dry-run confirmation, the live progress bar of a slow step, the per-attempt event log,
 * and a pipeline's run-history chart and tick log.
 */
suite(hasChromium ? '/etl operator views in a real browser' : `/etl operator views (skipped: no Chromium at ${CHROMIUM})`, () => {
  let env: PageEnv;
  let context: BrowserContext;
  let page: Page;
  let failFlag: string;
  const runStatus = async (id: string) => (await env.t.h.db.pool.query('select status, generation from etl_runs where id = $1', [id])).rows[0];
  const failedRun = async (pipeline: string) => {
    await env.t.h.redis.set(failFlag, '1');
    try {
      return await env.t.triggerAndWait(pipeline, 'failed');
    } finally {
      await env.t.h.redis.del(failFlag);
    }
  };

  beforeAll(async () => {
    env = await startPageEnv([demoSeed('bulk.a'), demoSeed('bulk.b'), demoSeed('progress', { transformMs: 8_000, progressRows: 50_000 }), demoSeed('hist')]);
    failFlag = `${env.t.h.prefix}:fail:transform`;
    ({ context, page } = await env.newLoggedInPage({ width: 1280, height: 800 }));
  }, TEST_MS);

  afterAll(async () => {
    await env?.t.h.redis.del(failFlag).catch(() => {});
    await context?.close().catch(() => {});
    await env?.close();
  }, TEST_MS);

  it('"Resume failed runs" confirms with the dry run\'s counts, then resumes only the newest non-superseded failed run', async () => {
    const a1 = await failedRun('bulk.a');
    const a2 = await failedRun('bulk.a');
    const b1 = await failedRun('bulk.b');
    await env.t.triggerAndWait('bulk.b', 'succeeded');
    await go(page, '#/');
    await page.getByTestId('bulk-resume').click();
    const dialog = page.getByTestId('confirm-dialog');
    await dialog.waitFor();
    const text = (await dialog.textContent()) ?? '';
    expect(text).toContain('Resume 1 failed run?');
    expect(text).toContain('3 failed runs match. 1 will be resumed (the newest per pipeline); 2 skipped');
    expect(text).toContain('1 superseded by a newer success');
    // The dry run behind the dialog changed nothing.
    for (const id of [a1, a2, b1]) expect(await runStatus(id)).toEqual({ status: 'failed', generation: 0 });
    await page.screenshot({ path: '/tmp/etl-bulk-resume-confirm.png' });
    await page.getByTestId('confirm-ok').click();
    await page.locator('[data-testid="toast"][data-kind="ok"]', { hasText: 'Resumed 1 run, skipped 2' }).waitFor();
    await waitFor(async () => (await runStatus(a2)).status === 'succeeded' || null, { timeoutMs: RUN_MS, what: 'the newest failed run to succeed' });
    expect(await runStatus(a1)).toEqual({ status: 'failed', generation: 0 });
    expect(await runStatus(b1)).toEqual({ status: 'failed', generation: 0 });
  }, TEST_MS);

  it('a slow step shows a live progress bar with rows/s and an ETA that moves', async () => {
    await go(page, '#/pipelines/progress');
    const runId = await runNowAndOpen(page, 'progress');
    await waitStatus(page, 'step-status-transform', 'running', UI_MS);
    const bar = page.getByTestId('progress-transform');
    const done = async () => Number((await bar.getAttribute('data-rows-done')) ?? 0);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="progress-transform"]')?.getAttribute('data-rows-done') ?? 0) > 0, undefined, { timeout: UI_MS });
    const first = await done();
    const firstWidth = await page.locator('[data-testid="progress-transform"] .progress-fill').evaluate((el) => el.getBoundingClientRect().width);
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="progress-transform"]')?.getAttribute('data-rows-done') ?? 0) > n + 5_000, first, { timeout: UI_MS });
    const secondWidth = await page.locator('[data-testid="progress-transform"] .progress-fill').evaluate((el) => el.getBoundingClientRect().width);
    expect(secondWidth).toBeGreaterThan(firstWidth);
    const text = (await page.getByTestId('progress-text-transform').textContent()) ?? '';
    expect(text).toMatch(/^[\d,]+ \/ 50,000 rows · [\d,]+ rows\/s · ETA /);
    await page.screenshot({ path: '/tmp/etl-progress.png' });
    await waitStatus(page, 'run-status', 'succeeded');
    expect(await page.getByTestId('progress-transform').count()).toBe(0);
    expect((await runStatus(runId)).status).toBe('succeeded');
  }, TEST_MS);

  it('the event log shows each attempt, newest open: the retried attempt says why and after how long', async () => {
    await go(page, '#/pipelines/hist');
    await env.t.h.redis.set(failFlag, '1');
    const runId = await runNowAndOpen(page, 'hist');
    await waitStatus(page, 'run-status', 'failed');
    await env.t.h.redis.del(failFlag);
    await clickAndConfirm(page, 'retry-step-transform');
    await waitStatus(page, 'run-status', 'succeeded');
    await page.locator('[data-testid="event-log-transform"] summary').first().click();
    const newest = page.getByTestId('events-transform-attempt-3');
    await newest.waitFor();
    expect(await newest.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(true);
    expect(await newest.locator('tr[data-event-type="staged"]').textContent()).toContain('3 values transformed');
    const first = page.getByTestId('events-transform-attempt-1');
    expect(await first.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    await first.locator('summary').click();
    expect(await first.locator('tr[data-event-type="retry"]').textContent()).toMatch(/attempt 1 failed; the step runs again in [\d.]+ s: transform told to fail/);
    expect(await page.locator('[data-testid="event-log-transform"]').textContent()).not.toContain('hunter2-secret');
    await page.screenshot({ path: '/tmp/etl-event-log.png', fullPage: true });
    expect((await runStatus(runId)).status).toBe('succeeded');
  }, TEST_MS);

  it('the runs view charts the last runs (failed marked, bars link to runs) and shows the tick log', async () => {
    const failed = await failedRun('hist');
    await env.t.triggerAndWait('hist', 'succeeded');
    await env.t.h.db.pool.query(
      `insert into etl_schedule_ticks (pipeline_id, scheduled_for, outcome, run_id, detail, lag_ms) values
         ('hist', now() - interval '3 hours', 'fired', $1, null, 412),
         ('hist', now() - interval '2 hours', 'skipped_overlap', null, 'the previous run was still active', null),
         ('hist', now() - interval '1 hour', 'missed', null, 'missed while no scheduler ran (catch-up policy: none)', null)`, [failed]);
    // The failed run quick, the others slow: its bar is the 2 px minimum, the case a click
    // on the bar alone could miss.
    await env.t.h.db.pool.query(
      `update etl_runs set started_at = created_at, finished_at = created_at + case when id = $1 then interval '10 ms' else interval '10 minutes' end
       where pipeline_id = 'hist'`, [failed]);
    await go(page, '#/pipelines/hist');
    const chart = page.getByTestId('run-history');
    await chart.waitFor();
    const runs = (await env.t.h.db.pool.query(`select id, status from etl_runs where pipeline_id = 'hist'`)).rows as { id: string; status: string }[];
    expect(await chart.locator('.history-bar').count()).toBe(runs.length);
    expect(await chart.locator('.history-bar[data-status="failed"]').count()).toBe(runs.filter((r) => r.status === 'failed').length);
    expect(await chart.locator(`[data-testid="history-bar-${failed}"] .fail-mark`).count()).toBe(1);
    await page.locator('[data-testid="tick-log-section"] summary').click();
    const ticks = page.getByTestId('tick-row');
    await ticks.first().waitFor();
    expect(await ticks.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-outcome')))).toEqual(['missed', 'skipped_overlap', 'fired']);
    expect(await page.getByTestId('tick-log').textContent()).toContain('the previous run was still active');
    await page.screenshot({ path: '/tmp/etl-history.png', fullPage: true });
    // Clicked at the top of its column, far above its 2 px bar and the ✕ over it (as high as
    // a full-height bar of a slow run reaches): the whole column is the link.
    const link = chart.locator(`[data-testid="history-bar-${failed}"]`);
    const linkBox = (await link.boundingBox())!;
    const tallest = Math.min(...(await chart.locator('.history-bar[data-status="succeeded"] rect:not(.hit)').evaluateAll(
      (rects) => rects.map((r) => r.getBoundingClientRect().top))));
    await link.click({ position: { x: linkBox.width / 2, y: tallest + 2 - linkBox.y }, timeout: 5_000 });
    await page.waitForFunction((id) => location.hash === `#/runs/${id}`, failed, { timeout: UI_MS });
    await waitStatus(page, 'run-status', 'failed', UI_MS);
  }, TEST_MS);
});

/**
 * The Alerts view (SPEC §12): reached from the top navigation, it lists recent alerts with
 * their delivery state (pending with its next attempt, delivered, failed with the last
 * error), says when no webhook is configured, and "Send test alert" queues one (operator).
 */
suite(hasChromium ? '/etl alerts view in a real browser' : `/etl alerts view (skipped: no Chromium at ${CHROMIUM})`, () => {
  let env: PageEnv;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    env = await startPageEnv([demoSeed('alerting'), demoSeed('reference')]);
    ({ context, page } = await env.newLoggedInPage({ width: 1280, height: 800 }));
  }, TEST_MS);
  afterAll(async () => {
    await context?.close().catch(() => {});
    await env?.close();
  }, TEST_MS);

  it('lists alerts with their delivery state and sends a test alert', async () => {
    const { t } = env;
    await t.h.redis.set(`${t.h.prefix}:fail:transform`, '1');
    const runId = await t.triggerAndWait('alerting', 'failed');
    await t.h.redis.del(`${t.h.prefix}:fail:transform`);
    // Two more alerts as a worker's sender would have left them (this app runs no sender).
    await t.h.db.pool.query(
      `insert into etl_alerts (id, type, occurred_at, pipeline_id, dataset, summary, state, attempts, last_status, delivered_at, last_error, next_attempt_at) values
       (gen_random_uuid(), 'dataset.stale', now() - interval '3 minutes', 'reference', 'bq:reference:countries',
        'last published 2026-11-30T01:00:00.000Z (26 h ago), older than its max age of 2 h', 'delivered', 1, 200, now() - interval '3 minutes', null, now()),
       (gen_random_uuid(), 'schedule.overdue', now() - interval '2 hours', 'reference', null,
        'the tick due at 2026-11-30T03:00:00.000Z was not fired within 60 s (no scheduler has handled it)', 'failed', 97, 503, null, 'HTTP 503', now())`);

    await page.getByTestId('nav-alerts').click();
    await page.getByTestId('alerts-table').waitFor();
    expect(await page.title()).toBe('Alerts · ETL');
    const failed = page.locator('[data-alert-type="run.failed"]');
    await failed.waitFor();
    expect(await failed.textContent()).toContain('transform: ');
    expect(await failed.locator(`a[href="#/runs/${runId}"]`).count()).toBe(1);
    expect(await failed.locator('[data-status="pending"]').count()).toBe(1);
    expect(await failed.textContent()).toContain('next attempt');
    expect(await page.locator('[data-alert-type="dataset.stale"] [data-status="delivered"]').count()).toBe(1);
    const overdue = page.locator('[data-alert-type="schedule.overdue"]');
    expect(await overdue.locator('[data-status="failed"]').count()).toBe(1);
    expect(await overdue.textContent()).toContain('HTTP 503');
    expect(await page.getByTestId('alerts-webhook-notice').textContent()).toContain('ALERT_WEBHOOK_URL is not set');

    await page.getByTestId('send-test-alert').click();
    await page.locator('[data-testid="toast"][data-kind="ok"]', { hasText: 'Test alert queued' }).waitFor();
    await page.locator('[data-alert-type="test"]').waitFor();
    const { rows } = await t.h.db.pool.query(`select count(*)::int as n from etl_audit_log where action = 'alerts.test'`);
    expect(rows[0].n).toBe(1);
    expect(await bodyOverflowPx(page)).toBeLessThanOrEqual(0);
    await screenshot(page, 'alerts-1280x800.png');
  }, TEST_MS);
});
