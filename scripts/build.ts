import { cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { buildWeb } from '../web/build';

/** `npm run build`: the production bundle in dist/ (api, worker, migrate, healthcheck, migrations,
 *  the page). npm packages stay external: the image installs production deps. */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist');
rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: {
    api: 'server/main.ts', worker: 'worker/main.ts', migrate: 'scripts/migrate.ts', healthcheck: 'scripts/healthcheck.ts',
    // For a host server (SP0's Fastify api): createEtlApi, etlFastifyPlugin.
    listener: 'server/listener.ts',
  },
  absWorkingDir: root,
  outdir: out,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  // Modules imported dynamically (the heavy source clients) become chunks loaded on first use.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
});
cpSync(path.join(root, 'db/migrations'), path.join(out, 'migrations'), { recursive: true });
// The production page ships without a source map (SPEC §7).
await buildWeb(path.join(out, 'web'), { sourcemap: false });
process.stdout.write(`built ${out}\n`);
