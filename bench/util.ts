import { performance } from 'node:perf_hooks';

export interface BenchRow {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  note?: string;
}

export const now = () => performance.now();

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;

export function printTable(rows: BenchRow[]): void {
  const cols = ['bench', 'metric', 'value', 'unit', 'note'] as const;
  const cells = rows.map((r) => [r.bench, r.metric, String(round(r.value)), r.unit, r.note ?? '']);
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (vals: readonly string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(cols));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const c of cells) console.log(line(c));
}

/** Runs `task` for `total` items with at most `inFlight` in flight. */
export async function pool(total: number, inFlight: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(inFlight, total) }, async () => {
    while (next < total) await task(next++);
  });
  await Promise.all(lanes);
}

/** Drops a benchmark's scratch database (connecting to `postgres` on the same server). */
export async function dropDatabase(pgBase: string, name: string): Promise<void> {
  const { createDatabase } = await import('../db/client');
  const admin = createDatabase(`${pgBase}/postgres`, { max: 1 });
  await admin.pool.query(`drop database if exists "${name}" with (force)`);
  await admin.close();
}
