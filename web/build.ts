// Bundles the /etl operator page: web/src/main.ts -> <outDir>/app.js (+ map), and copies
// index.html and styles.css. Run with `npx tsx web/build.ts [outDir]`.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const webDir = path.dirname(fileURLToPath(import.meta.url));

export interface BuildResult {
  outDir: string;
  files: string[];
}

/** outDir is resolved against the current working directory (default: web/dist from the repo root). */
/** `sourcemap: false` for the production page (SPEC §7): no map is emitted or served. */
export async function buildWeb(outDir = 'web/dist', o: { sourcemap?: boolean } = {}): Promise<BuildResult> {
  const sourcemap = o.sourcemap ?? true;
  const out = path.resolve(outDir);
  await mkdir(out, { recursive: true });
  await build({
    entryPoints: [path.join(webDir, 'src', 'main.ts')],
    outfile: path.join(out, 'app.js'),
    bundle: true,
    minify: true,
    sourcemap,
    format: 'iife',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    legalComments: 'none',
    logLevel: 'warning',
    tsconfigRaw: { compilerOptions: { strict: true } },
  });
  for (const f of ['index.html', 'styles.css']) {
    await copyFile(path.join(webDir, f), path.join(out, f));
  }
  return { outDir: out, files: ['index.html', 'styles.css', 'app.js', ...(sourcemap ? ['app.js.map'] : [])] };
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  buildWeb(process.argv[2]).then(
    (r) => console.log(`web: built ${r.files.join(', ')} into ${path.relative(process.cwd(), r.outDir) || '.'}`),
    (err: unknown) => {
      console.error('web: build failed:', err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
