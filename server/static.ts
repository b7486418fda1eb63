import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Hono } from 'hono';
import type { AppEnv } from './context';

/**
 * Serves the built /etl page in dev (nginx does it in compose). Only a fixed list of
 * files can be served, so no request path ever reaches the file system: traversal is
 * impossible by construction, not by sanitising.
 */
const FILES: Record<string, { file: string; type: string }> = {
  '/etl': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/etl/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/etl/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/etl/app.js.map': { file: 'app.js.map', type: 'application/json; charset=utf-8' },
  '/etl/styles.css': { file: 'styles.css', type: 'text/css; charset=utf-8' },
};

export function mountWebPage(app: Hono<AppEnv>, webDir: string): void {
  const dir = path.resolve(webDir);
  for (const [route, { file, type }] of Object.entries(FILES)) {
    app.get(route, async (c) => {
      let body: Buffer;
      try {
        // Read per request: a rebuild of the page shows up without restarting the api.
        body = await readFile(path.join(dir, file));
      } catch {
        return c.json({ error: { code: 'not_built', message: 'the /etl page is not built (npx tsx web/build.ts)' } }, 404);
      }
      return c.body(new Uint8Array(body), 200, { 'Content-Type': type, 'Cache-Control': 'no-cache' });
    });
  }
}
