import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/**
 * The compose files against the seed's resource budget (deploy/sp0/budget.md, copied
 * verbatim from the architecture sketch): SP1 adds one container, `marketing-worker`,
 * 1 CPU / 512 MB, and the total still fits a 4-vCPU / 4 GB host.
 */

/** The parts of a compose service these checks read. */
interface Service {
  mem_limit: string; cpus: number; restart?: string; profiles?: string[]; labels?: Record<string, string>;
  deploy?: { replicas?: number }; networks?: string[]; environment: Record<string, string>;
  depends_on?: Record<string, unknown>;
}
// Compose's `!override` / `!reset` tags only change how files merge; `mergeServices` below applies them.
const load = (file: string) => parse(readFileSync(file, 'utf8').replace(/ !(override|reset)\b/g, ''), { merge: true }) as { services: Record<string, Service>; networks?: Record<string, { external?: boolean }> };

interface BudgetRow { service: string; ramMb: number; cpus: number }

/** Rows of the box-drawn table: `│ name │ 512 MB │ 1.0 │ why │`; wrapped lines have an empty name. */
function parseBudget(text: string): { rows: BudgetRow[]; total: { ramMb: number; cpus: number } } {
  const rows: BudgetRow[] = [];
  let total: { ramMb: number; cpus: number } | undefined;
  for (const line of text.split('\n')) {
    const cells = line.split('│').map((c) => c.trim());
    if (cells.length < 5 || !cells[1] || cells[1] === 'service') continue;
    const ram = /([\d.]+)\s*(MB|GB)/.exec(cells[2]);
    const cpus = Number(/[\d.]+/.exec(cells[3])?.[0]);
    if (!ram || !Number.isFinite(cpus)) throw new Error(`unreadable budget row: ${line}`);
    const ramMb = Number(ram[1]) * (ram[2] === 'GB' ? 1024 : 1);
    if (cells[1].startsWith('TOTAL')) total = { ramMb, cpus };
    else rows.push({ service: cells[1], ramMb, cpus });
  }
  if (!total || rows.length === 0) throw new Error('no budget table found');
  return { rows, total };
}

const mb = (limit: string) => {
  const m = /^(\d+)([mg])$/i.exec(limit);
  if (!m) throw new Error(`unsupported mem_limit ${limit}`);
  return Number(m[1]) * (m[2].toLowerCase() === 'g' ? 1024 : 1);
};

const budget = parseBudget(readFileSync('deploy/sp0/budget.md', 'utf8'));
const base = load('docker-compose.yml');
const override = load('deploy/sp0/compose.override.yml');

/** The services `docker compose -f docker-compose.yml -f deploy/sp0/compose.override.yml up -d` starts. */
function mergeServices(): Record<string, Service> {
  const out: Record<string, Service> = {};
  for (const name of Object.keys({ ...base.services, ...override.services })) {
    const merged = { ...(base.services[name] ?? {}), ...(override.services[name] ?? {}) };
    if (merged.profiles?.length) continue; // not started without --profile
    out[name] = merged;
  }
  return out;
}

const longRunning = (services: Record<string, Service>) =>
  Object.entries(services).filter(([, s]) => s.restart !== 'no' && s.labels?.['etl.budget'] !== 'one-shot');

describe("the seed's budget table", () => {
  it('parses: marketing-worker 512 MB / 1.0 CPU is the only new container; SP0+SP1 ~2.7 GB', () => {
    expect(budget.rows).toEqual([{ service: 'marketing-worker', ramMb: 512, cpus: 1 }]);
    expect(budget.total.ramMb).toBeLessThanOrEqual(4 * 1024);
  });
});

describe('docker-compose.yml (standalone)', () => {
  it('sets a memory and a CPU limit on every service', () => {
    for (const [name, svc] of Object.entries(base.services)) {
      expect(mb(svc.mem_limit), `${name} mem_limit`).toBeGreaterThan(0);
      expect(svc.cpus, `${name} cpus`).toBeGreaterThan(0);
    }
  });

  it('runs exactly the budget rows as its SP1 containers, with their limits, one replica each', () => {
    const sp1 = Object.entries(base.services).filter(([, s]) => s.labels?.['etl.budget'] === 'sp1');
    expect(sp1.map(([n]) => n).sort()).toEqual(budget.rows.map((r) => r.service).sort());
    for (const row of budget.rows) {
      const svc = base.services[row.service];
      expect(mb(svc.mem_limit)).toBe(row.ramMb);
      expect(svc.cpus).toBe(row.cpus);
      expect(svc.deploy?.replicas ?? 1).toBe(1);
    }
    // Everything else is labelled: a one-shot, or a stand-in for an SP0 service.
    for (const [name, svc] of Object.entries(base.services)) {
      expect(['sp1', 'one-shot', 'sp0-stand-in'], name).toContain(svc.labels?.['etl.budget']);
    }
  });
});

describe('deploy/sp0/compose.override.yml (on an SP0 host)', () => {
  const running = mergeServices();

  it("keeps only the budget's containers running, within the budget's RAM and CPU", () => {
    const names = longRunning(running).map(([n]) => n).sort();
    expect(names).toEqual(budget.rows.map((r) => r.service).sort());
    const ram = longRunning(running).reduce((a, [, s]) => a + mb(s.mem_limit), 0);
    const cpus = longRunning(running).reduce((a, [, s]) => a + s.cpus, 0);
    expect(ram).toBeLessThanOrEqual(budget.rows.reduce((a, r) => a + r.ramMb, 0));
    expect(cpus).toBeLessThanOrEqual(budget.rows.reduce((a, r) => a + r.cpus, 0));
    // One-shots still carry limits.
    for (const [name, s] of Object.entries(running)) expect(mb(s.mem_limit), name).toBeGreaterThan(0);
  });

  it("uses SP0's Postgres and Redis on SP0's network, never the stand-ins", () => {
    for (const name of ['postgres', 'redis', 'api', 'web']) expect(running[name], name).toBeUndefined();
    expect(override.networks?.sp0?.external).toBe(true);
    for (const name of ['migrate', 'marketing-worker']) {
      const svc = override.services[name];
      expect(svc.networks).toContain('sp0');
      expect(svc.environment.DATABASE_URL).toMatch(/^\$\{DATABASE_URL:\?/);
      expect(svc.environment.REDIS_URL).toMatch(/^\$\{REDIS_URL:\?/);
      // No dependency on a service that does not start.
      for (const dep of Object.keys(svc.depends_on ?? {})) expect(running[dep], `${name} → ${dep}`).toBeDefined();
    }
    expect(readFileSync('deploy/sp0/compose.override.yml', 'utf8')).toMatch(/depends_on: !override/);
  });
});
