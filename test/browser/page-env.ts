import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createTestApp, type demoSeed, type TestApp } from '../../server/testing';
import { buildWeb } from '../../web/build';

/**
 * The /etl page against a real api on a real port: the page is built into a temp dir,
 * the app (createTestApp: fresh Postgres database, real Redis, in-process worker running
 * the demo workflow, the real SSE hub) is served by @hono/node-server, and a Debian
 * Chromium drives it. Nothing is mocked between the browser and Postgres.
 */

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
export const ARTIFACTS = path.resolve('test-artifacts');

/** Bounded waits for a loaded 2-core box: UI reactions, and whole runs through BullMQ. */
export const UI_MS = 15_000;
export const RUN_MS = 45_000;

export interface PageEnv {
  t: TestApp;
  base: string;
  browser: Browser;
  /** A context (own localStorage) with the given viewport, already past the login form. */
  newLoggedInPage(viewport: { width: number; height: number }): Promise<{ context: BrowserContext; page: Page }>;
  close(): Promise<void>;
}

export async function startPageEnv(seeds: ReturnType<typeof demoSeed>[]): Promise<PageEnv> {
  const webDir = await mkdtemp(path.join(os.tmpdir(), 'etl-web-'));
  await buildWeb(webDir);
  await mkdir(ARTIFACTS, { recursive: true });
  const t = await createTestApp({ seeds, deps: { webDir, sse: { heartbeatMs: 2_000 } } });
  let server: ServerType | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close().catch(() => {});
    await t.hub.close(); // ends open SSE streams so the server can close
    if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
    await t.close();
    await rm(webDir, { recursive: true, force: true });
  };
  try {
    server = serve({ fetch: t.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      server!.once('listening', () => resolve());
      server!.once('error', reject);
    });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 60_000,
    });
    const b = browser;
    return {
      t, base, browser: b, close,
      async newLoggedInPage(viewport) {
        const context = await b.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC' });
        context.setDefaultTimeout(UI_MS);
        const page = await context.newPage();
        await page.goto(`${base}/etl`);
        await login(page, t.token);
        return { context, page };
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** No stored token, no session cookie: the page asks for the token; it then shows the table. */
export async function login(page: Page, token: string): Promise<void> {
  await page.getByTestId('login-form').waitFor({ state: 'visible' });
  await page.getByTestId('token-input').fill(token);
  await page.getByTestId('token-submit').click();
  await page.getByTestId('login-form').waitFor({ state: 'detached' });
  await page.getByTestId('pipelines-table').waitFor({ state: 'visible' });
  await waitLive(page);
}

export const waitLive = (page: Page) =>
  page.waitForSelector('[data-testid="live-indicator"][data-state="live"]', { timeout: UI_MS });

/** Waits for a status pill (`run-status`, `step-status-<key>`) to show `status`. */
export const waitStatus = (page: Page, testid: string, status: string, timeout = RUN_MS) =>
  page.waitForSelector(`[data-testid="${testid}"][data-status="${status}"]`, { timeout });

/** Clicks a button that opens the confirm dialog and confirms it. */
export async function clickAndConfirm(page: Page, testid: string): Promise<void> {
  await page.getByTestId(testid).click();
  await page.getByTestId('confirm-ok').click();
  await page.getByTestId('confirm-dialog').waitFor({ state: 'detached' });
}

/**
 * Presses "Run now" (pipelines table or runs view), confirms, and follows the toast's
 * "Open run" link to the drilldown. Returns the new run id (from the API's 202 answer).
 */
export async function runNowAndOpen(page: Page, pipelineId: string): Promise<string> {
  const answer = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith(`/pipelines/${pipelineId}/trigger`));
  await clickAndConfirm(page, `run-now-${pipelineId}`);
  const res = await answer;
  if (res.status() !== 202) throw new Error(`trigger answered ${res.status()}: ${await res.text()}`);
  const { runId } = (await res.json()) as { runId: string };
  await page.locator(`[data-testid="toast"] a[href="#/runs/${runId}"]`).click();
  await page.getByTestId('run-header').waitFor({ state: 'visible' });
  return runId;
}

/** True when nothing makes the page wider than the viewport (no horizontal scrolling). */
export const bodyOverflowPx = (page: Page) =>
  page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth);

/** Full-page screenshot into test-artifacts/, with open toasts dismissed so they hide nothing. */
export async function screenshot(page: Page, name: string): Promise<void> {
  // In one go: a toast may expire between finding and clicking its close button.
  await page.evaluate(() => document.querySelectorAll<HTMLButtonElement>('[data-testid="toast"] .toast-close').forEach((b) => b.click()));
  await page.locator('[data-testid="toast"]').first().waitFor({ state: 'detached' });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true, animations: 'disabled' });
}
