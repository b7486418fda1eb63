import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signSessionId } from '../../server/session';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from '../../server/testing';
import { buildWeb } from '../../web/build';
import { waitFor } from '../helpers';
import { CHROMIUM, clickAndConfirm, RUN_MS, UI_MS } from './page-env';

/**
 * The production path: Chromium → nginx started from deploy/nginx.conf on a non-default
 * port → the api, with SP0-style signed session cookies (SESSION_SECRET). Only the
 * upstream address, the listen port and the document root are rewritten. Shows the
 * findings of issue 13 closed: mutations pass the origin check on a non-default port, a
 * client's X-Forwarded-Host is not trusted, the page gets its security headers and no
 * source map, and a viewer session sees no enabled action.
 */

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(existsSync);
const suite = existsSync(CHROMIUM) && NGINX ? describe : describe.skip;
const SECRET = 'sp0-signing-secret-for-the-nginx-test-42';
const TEST_MS = 120_000;

const freePort = () => new Promise<number>((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address() as AddressInfo;
    s.close(() => resolve(port));
  });
});

suite('/etl through nginx (deploy/nginx.conf) on a non-default port', () => {
  let t: TestApp;
  let server: ServerType;
  let nginx: ChildProcess;
  let browser: Browser;
  let dir: string;
  let web: string;
  let operatorCookie: string;
  let viewerCookie: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'etl-nginx-'));
    await buildWeb(path.join(dir, 'html', 'etl'), { sourcemap: false });
    t = await createTestApp({ seeds: [demoSeed('live')], config: { sessionSecret: SECRET }, deps: { sse: { heartbeatMs: 2_000 } } });
    server = serve({ fetch: t.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const apiPort = (server.address() as AddressInfo).port;
    const port = await freePort();
    web = `http://127.0.0.1:${port}`;
    const site = (await readFile('deploy/nginx.conf', 'utf8'))
      .replace('server api:3000;', `server 127.0.0.1:${apiPort};`)
      .replace('listen 8080;', `listen 127.0.0.1:${port};`)
      .replace('root /usr/share/nginx/html;', `root ${path.join(dir, 'html')};`);
    expect(site).toContain(`listen 127.0.0.1:${port};`);
    await mkdir(path.join(dir, 'logs'));
    await writeFile(path.join(dir, 'site.conf'), site);
    const tmp = (n: string) => `${n}_temp_path ${path.join(dir, n)};`;
    await writeFile(path.join(dir, 'nginx.conf'), [
      'daemon off;', 'user root;', 'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/logs/error.log;`, 'events {}',
      'http {', `  access_log ${dir}/logs/access.log;`, '  include /etc/nginx/mime.types;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((n) => `  ${tmp(n)}`), `  include ${dir}/site.conf;`, '}', ''].join('\n'));
    nginx = spawn(NGINX!, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
    await waitFor(async () => (await fetch(`${web}/etl`).catch(() => null))?.status === 200, { timeoutMs: 15_000, what: 'nginx to serve /etl' });

    // SP0 sessions: Fastify-style signed for the operator, Express-style for the viewer.
    operatorCookie = signSessionId(await t.addSession(JSON.stringify({ user: { id: 'op-1', name: 'Olena', role: 'admin' } })), SECRET);
    viewerCookie = signSessionId(await t.addSession(JSON.stringify({ user: { id: 'viewer-1', name: 'Viktor', role: 'viewer' } })), SECRET, 'express');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 60_000,
    });
  }, TEST_MS);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    if (nginx?.pid) nginx.kill('SIGQUIT');
    await t?.hub.close();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, TEST_MS);

  async function pageWith(cookie: string) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'UTC' });
    context.setDefaultTimeout(UI_MS);
    await context.addCookies([{ name: SESSION_COOKIE, value: cookie, url: web }]);
    const page = await context.newPage();
    const cspErrors: string[] = [];
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); });
    await page.goto(`${web}/etl`);
    await page.getByTestId('pipelines-table').waitFor({ state: 'visible' });
    return { context, page, cspErrors };
  }

  it('serves the page with CSP, nosniff, frame-ancestors and Referrer-Policy, no source map, no /metrics', async () => {
    for (const p of ['/etl', '/etl/app.js']) {
      const r = await fetch(web + p);
      expect(r.status, p).toBe(200);
      expect(r.headers.get('content-security-policy'), p).toMatch(/default-src 'self'.*frame-ancestors 'none'/);
      expect(r.headers.get('x-content-type-options'), p).toBe('nosniff');
      expect(r.headers.get('referrer-policy'), p).toBe('same-origin');
    }
    expect((await fetch(`${web}/etl/app.js.map`)).status).toBe(404);
    expect(await (await fetch(`${web}/etl/app.js`)).text()).not.toContain('sourceMappingURL');
    expect((await fetch(`${web}/metrics`)).status).toBe(404);
  });

  it('an operator session (signed cookie): Run now works through nginx; the run records who', async () => {
    const { context, page, cspErrors } = await pageWith(operatorCookie);
    await page.waitForSelector('[data-testid="live-indicator"][data-state="live"]', { timeout: UI_MS });
    expect(await page.getByTestId('read-only-notice').isHidden()).toBe(true);
    const answer = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/pipelines/live/trigger'));
    await clickAndConfirm(page, 'run-now-live');
    const res = await answer;
    expect(res.status()).toBe(202);
    const { runId } = (await res.json()) as { runId: string };
    // The live stream (cookie, no token in any URL) brings the table to "succeeded".
    await page.waitForSelector('[data-testid="last-run-live"] .pill[data-status="succeeded"]', { timeout: RUN_MS });
    await page.getByTestId('last-run-live').click();
    await page.locator('[data-testid="run-triggered-by"]', { hasText: 'Olena' }).waitFor();
    const { rows } = await t.h.db.pool.query(`select actor, action from etl_audit_log where run_id = $1`, [runId]);
    expect(rows).toEqual([{ actor: { kind: 'session', id: 'op-1', name: 'Olena' }, action: 'pipeline.trigger' }]);
    expect(cspErrors).toEqual([]);
    // No credential ever in a URL nginx logged (the SSE request is logged when it ends).
    const log = await readFile(path.join(dir, 'logs', 'access.log'), 'utf8');
    expect(log).toContain('/api/etl/pipelines/live/trigger');
    for (const secret of [t.token, operatorCookie.split('.')[0]]) expect(log).not.toContain(secret);
    await context.close();
  }, TEST_MS);

  it('a client-supplied X-Forwarded-Host does not get a cross-site request past the origin check', async () => {
    const post = (headers: Record<string, string>) => fetch(`${web}/api/etl/pipelines/live/enable`, {
      method: 'POST', body: '{"enabled":false}',
      headers: { cookie: `${SESSION_COOKIE}=${operatorCookie}`, 'content-type': 'application/json', ...headers },
    });
    expect((await post({ origin: 'https://evil.example', 'x-forwarded-host': 'evil.example' })).status).toBe(403);
    expect((await post({ origin: web })).status).toBe(200);
  });

  it('a viewer session sees no enabled action, and is told why', async () => {
    const { context, page } = await pageWith(viewerCookie);
    const notice = page.getByTestId('read-only-notice');
    await notice.waitFor({ state: 'visible' });
    expect(await notice.textContent()).toMatch(/no operator role.*admin/);
    const enabledActions = () => page.evaluate(() => [...document.querySelectorAll<HTMLButtonElement | HTMLInputElement>(
      '[data-testid^="run-now-"], [data-testid^="toggle-enabled-"], [data-testid^="cron-input-"], [data-testid^="tz-input-"], '
      + '[data-testid^="save-cron-"], [data-testid^="retry-step-"], [data-testid^="rerun-from-"], [data-testid="resume-run"], [data-testid="cancel-run"]',
    )].filter((el) => !el.disabled).map((el) => el.dataset['testid']));
    expect(await page.getByTestId('run-now-live').count()).toBe(1);
    expect(await enabledActions()).toEqual([]);
    expect(await page.getByTestId('run-now-live').getAttribute('title')).toMatch(/operator role/);
    // The drilldown of a run: no enabled action either.
    await page.getByTestId('last-run-live').click();
    await page.getByTestId('run-header').waitFor();
    await page.getByTestId('rerun-from-fetch').waitFor();
    expect(await enabledActions()).toEqual([]);
    // And the API agrees.
    const r = await page.evaluate(async () => (await fetch('/api/etl/pipelines/live/trigger', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
    })).status);
    expect(r).toBe(403);
    await context.close();
  }, TEST_MS);
});
