// `npm run api|worker|migrate`: one Node process, no wrapper. It runs the built bundle
// (dist/<name>.mjs, from `npm run build`) when that is newer than every source file, else
// the TypeScript source through tsx's loader registered in this same process. Plain JS
// on purpose: nothing has to be compiled to start it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entries = { api: 'server/main.ts', worker: 'worker/main.ts', migrate: 'scripts/migrate.ts' };
const name = process.argv[2];
if (!Object.hasOwn(entries, name)) {
  process.stderr.write(`usage: node scripts/run.mjs ${Object.keys(entries).join('|')}\n`);
  process.exit(2);
}

function newestSource(dir, newest = 0) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = newestSource(p, newest);
    else if (e.name.endsWith('.ts') || e.name === 'package-lock.json') newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

// ETL_RUN_FROM=source|bundle forces one (benchmarks measure both).
const bundle = path.join(root, 'dist', `${name}.mjs`);
const from = process.env.ETL_RUN_FROM;
if (from === 'bundle' || (from !== 'source' && existsSync(bundle) && statSync(bundle).mtimeMs >= newestSource(root))) {
  await import(pathToFileURL(bundle).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(path.join(root, entries[name])).href);
}
