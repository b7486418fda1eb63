// `npm run api|worker|migrate`: one Node process, no wrapper. It runs the built bundle
// (dist/<name>.mjs, from `npm run build`) when that is newer than every source file. Else it
// compiles the TypeScript source of that one entry with esbuild into .run/<name>.mjs, reused
// while no source is newer, and runs that: no loader thread stays resident, so a worker
// started from a checkout is as small as the image's (tsx's loader hooks run on a thread of
// their own, ~25 MB). The compile runs in a short-lived Node child (this script with
// --compile, about half a second), so the long-running process never loads esbuild or holds
// its output (+13 MB idle when it did). Without esbuild (a production-only install) it falls
// back to tsx's loader. Plain JS on purpose: nothing has to be compiled to start it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entries = { api: 'server/main.ts', worker: 'worker/main.ts', migrate: 'scripts/migrate.ts' };
const name = process.argv[2];
const NO_ESBUILD = 3; // the --compile child's exit code when esbuild is not installed
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
const fresh = (file, newest) => existsSync(file) && statSync(file).mtimeMs >= newest;

/** The entry compiled to .run/<name>.mjs (one level below the root, as dist/ is, so the
 *  `import.meta.url`-relative paths resolve the same). npm packages stay external and load
 *  from node_modules; dynamic imports of them stay lazy. */
function compiled(newest) {
  const out = path.join(root, '.run', `${name}.mjs`);
  if (fresh(out, newest)) return out;
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), name, '--compile'], { stdio: 'inherit' });
  if (child.status === NO_ESBUILD) return undefined;
  if (child.status !== 0) process.exit(child.status ?? 1);
  return out;
}

/** The --compile child: writes .run/<name>.mjs and its map, then exits. */
async function compile() {
  const out = path.join(root, '.run', `${name}.mjs`);
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    process.exit(NO_ESBUILD);
  }
  const r = esbuild.buildSync({
    entryPoints: [path.join(root, entries[name])], absWorkingDir: root, outfile: out, write: false,
    bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external',
    sourcemap: 'linked', logLevel: 'warning',
  });
  mkdirSync(path.dirname(out), { recursive: true });
  // db/migrate.ts finds its SQL beside itself (dist/ gets a copy from the build): a link here.
  try {
    symlinkSync(path.join('..', 'db', 'migrations'), path.join(root, '.run', 'migrations'), 'dir');
  } catch (e) {
    if (e.code !== 'EEXIST') throw e;
  }
  // Written aside and renamed, map first: `npm run api` and `npm run worker` started together
  // never import a half-written file.
  for (const f of [...r.outputFiles].sort((a) => (a.path.endsWith('.map') ? -1 : 1))) {
    const tmp = `${f.path}.${process.pid}.tmp`;
    writeFileSync(tmp, f.contents);
    renameSync(tmp, f.path);
  }
}

if (process.argv[3] === '--compile') {
  await compile();
  process.exit(0);
}

// ETL_RUN_FROM=source|bundle forces one (benchmarks measure both).
const bundle = path.join(root, 'dist', `${name}.mjs`);
const from = process.env.ETL_RUN_FROM;
const newest = from === 'bundle' ? 0 : newestSource(root);
if (from === 'bundle' || (from !== 'source' && fresh(bundle, newest))) {
  await import(pathToFileURL(bundle).href);
} else {
  const file = compiled(newest);
  if (file) {
    await import(pathToFileURL(file).href);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import(pathToFileURL(path.join(root, entries[name])).href);
  }
}
