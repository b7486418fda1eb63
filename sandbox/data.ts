import type { SandboxTable } from './bigquery-wire';

/**
 * Realistic, deterministic sandbox data for the five pipelines, generated on demand
 * (a row is a function of its index), so any size costs no memory.
 */
const COUNTRIES: [string, string, string, string][] = [
  ['UA', 'Ukraine', 'Europe', 'UAH'], ['PL', 'Poland', 'Europe', 'PLN'], ['DE', 'Germany', 'Europe', 'EUR'],
  ['FR', 'France', 'Europe', 'EUR'], ['ES', 'Spain', 'Europe', 'EUR'], ['IT', 'Italy', 'Europe', 'EUR'],
  ['GB', 'United Kingdom', 'Europe', 'GBP'], ['US', 'United States', 'Americas', 'USD'], ['CA', 'Canada', 'Americas', 'CAD'],
  ['MX', 'Mexico', 'Americas', 'MXN'], ['BR', 'Brazil', 'Americas', 'BRL'], ['TR', 'Türkiye', 'Asia', 'TRY'],
  ['AE', 'United Arab Emirates', 'Asia', 'AED'], ['IN', 'India', 'Asia', 'INR'], ['TH', 'Thailand', 'Asia', 'THB'],
  ['JP', 'Japan', 'Asia', 'JPY'], ['AU', 'Australia', 'Oceania', 'AUD'], ['EG', 'Egypt', 'Africa', 'EGP'],
  ['ZA', 'South Africa', 'Africa', 'ZAR'], ['PT', 'Portugal', 'Europe', 'EUR'],
];
const CITIES = ['Kyiv', 'Warsaw', 'Berlin', 'Paris', 'Madrid', 'Rome', 'London', 'New York', 'Toronto', 'Cancún',
  'São Paulo', 'Istanbul', 'Dubai', 'Delhi', 'Bangkok', 'Tokyo', 'Sydney', 'Cairo', 'Cape Town', 'Lisbon'];
const ALLIANCES = ['Star Alliance', 'oneworld', 'SkyTeam', null];
const letters = (i: number, n: number) => {
  let s = '';
  for (let k = 0; k < n; k++, i = Math.floor(i / 26)) s = String.fromCharCode(65 + (i % 26)) + s;
  return s;
};

export function sandboxBigQueryTables(opts: { projects?: number } = {}): Record<string, SandboxTable> {
  return {
    countries: {
      schema: [{ name: 'code', type: 'STRING' }, { name: 'name', type: 'STRING' }, { name: 'region', type: 'STRING' }, { name: 'currency', type: 'STRING' }],
      rowCount: COUNTRIES.length,
      row: (i) => COUNTRIES[i],
    },
    airports: {
      schema: [{ name: 'iata', type: 'STRING' }, { name: 'name', type: 'STRING' }, { name: 'city', type: 'STRING' },
        { name: 'country_code', type: 'STRING' }, { name: 'latitude', type: 'FLOAT' }, { name: 'longitude', type: 'FLOAT' }],
      rowCount: 1_500,
      row: (i) => {
        const c = i % CITIES.length;
        return [letters(i * 7 + 11, 3), `${CITIES[c]} ${['International', 'Central', 'Airfield'][i % 3]}`, CITIES[c], COUNTRIES[c][0],
          Math.round((((i * 37) % 1400) / 10 - 70) * 1e4) / 1e4, Math.round((((i * 53) % 3600) / 10 - 180) * 1e4) / 1e4];
      },
    },
    airlines: {
      schema: [{ name: 'code', type: 'STRING' }, { name: 'name', type: 'STRING' }, { name: 'alliance', type: 'STRING' }],
      rowCount: 240,
      row: (i) => [letters(i * 3 + 5, 2), `${CITIES[i % CITIES.length]} ${['Air', 'Airways', 'Airlines', 'Wings'][i % 4]}`, ALLIANCES[i % 4]],
    },
    projects: {
      schema: [{ name: 'project_id', type: 'STRING' }, { name: 'name', type: 'STRING' }, { name: 'status', type: 'STRING' },
        { name: 'owner_email', type: 'STRING' }, { name: 'budget_usd', type: 'FLOAT' }, { name: 'created_at', type: 'TIMESTAMP' },
        { name: 'updated_at', type: 'TIMESTAMP' }],
      rowCount: opts.projects ?? 5_000,
      row: (i) => [`prj-${String(i).padStart(6, '0')}`, `${CITIES[i % CITIES.length]} campaign ${i}`,
        ['active', 'paused', 'archived'][i % 3], `owner${i % 97}@example.com`, Math.round((i * 7919) % 500_000) / 10,
        Date.UTC(2024, 0, 1) + i * 3_600_000, Date.UTC(2026, 0, 1) + (i % 5000) * 60_000],
    },
  };
}

/** The rows the sandbox ClickHouse returns for the top-destinations aggregate. */
export function* sandboxTopDests(limit = 100): Iterable<Record<string, unknown>> {
  for (let i = 0; i < limit; i++) {
    const c = i % CITIES.length;
    // UInt64 arrives as a string from ClickHouse: keep the sandbox honest.
    yield { destination: `${CITIES[c]}${i >= CITIES.length ? ` #${Math.floor(i / CITIES.length) + 1}` : ''}`,
      searches: String(100_000 - i * 731), users: String(40_000 - i * 263) };
  }
}
