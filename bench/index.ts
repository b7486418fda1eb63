import { printTable, type BenchRow } from './util';

/** `npm run bench`: every benchmark, one table. `npm run bench -- engine` runs one. */
const benches: Record<string, () => Promise<BenchRow[]>> = {
  engine: async () => (await import('./engine')).benchEngine(),
  scheduler: async () => (await import('./scheduler')).benchScheduler(),
  pipeline: async () => (await import('./pipeline')).benchPipeline(),
  api: async () => (await import('./api')).benchApi(),
  'worker-memory': async () => (await import('./worker-memory')).benchWorkerMemory(),
};

const only = process.argv.slice(2);
const rows: BenchRow[] = [];
for (const [name, run] of Object.entries(benches)) {
  if (only.length && !only.includes(name)) continue;
  process.stderr.write(`running ${name}…\n`);
  rows.push(...(await run()));
}
console.log(`\nmachine: ${(await import('node:os')).cpus().length} cores, node ${process.version}, ${new Date().toISOString()}\n`);
printTable(rows);
process.exit(0);
