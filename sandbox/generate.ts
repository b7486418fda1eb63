import type { SandboxColumnType, SandboxTable } from './bigquery-wire';

/**
 * Sandbox data for a query pipeline nobody wrote data for: rows generated from the
 * columns the pipeline declares (`{name: 'string' | 'integer?' | …}`), deterministic
 * (a row is a function of its index) so any size costs no memory. String values carry
 * the row index, so whichever column is a hash dataset's key stays unique.
 */
export type Columns = Readonly<Record<string, string>>;

const BQ_TYPE: Record<string, SandboxColumnType> = {
  string: 'STRING', number: 'FLOAT', integer: 'INTEGER', boolean: 'BOOLEAN', timestamp: 'TIMESTAMP', json: 'STRING',
};

function value(name: string, type: string, i: number): string | number | boolean | null {
  // Optional columns are null on every 7th row, so the null path is exercised too.
  if (type.endsWith('?') && i % 7 === 6) return null;
  switch (type.replace('?', '')) {
    case 'integer': return i + 1;
    case 'number': return Math.round(i * 137.5) / 10;
    case 'boolean': return i % 2 === 0;
    case 'timestamp': return Date.UTC(2025, 0, 1) + i * 3_600_000;
    case 'json': return JSON.stringify({ i });
    default: return `${name}-${String(i).padStart(6, '0')}`;
  }
}

export function tableFromColumns(columns: Columns, rowCount = 1_000): SandboxTable {
  const cols = Object.entries(columns);
  return {
    schema: cols.map(([name, type]) => ({ name, type: BQ_TYPE[type.replace('?', '')] ?? 'STRING' })),
    rowCount,
    row: (i) => cols.map(([name, type]) => value(name, type, i)),
  };
}

/** One row object per index, for a source that answers with JSON rows (ClickHouse). */
export function* rowsFromColumns(columns: Columns, rowCount = 100): Iterable<Record<string, unknown>> {
  const cols = Object.entries(columns);
  for (let i = 0; i < rowCount; i++) {
    const row: Record<string, unknown> = {};
    for (const [name, type] of cols) {
      const v = value(name, type, i);
      // ClickHouse sends 64-bit integers as strings; keep the sandbox honest.
      row[name] = type.startsWith('integer') && v !== null ? String(v) : v;
    }
    yield row;
  }
}
