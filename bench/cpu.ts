import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/**
 * CPU time by process, read from Linux's /proc: what a benchmark's work costs the
 * processes it touches (its workers, Postgres, Redis, ClickHouse, the bench itself). On a
 * machine where they all share the cores, `cores / CPU per unit of work` estimates the
 * best rate that CPU allows. Only the classified processes count (not the kernel's own
 * threads, nor anything else on the machine). Elsewhere (no /proc) every figure is NaN.
 */
const TICKS_PER_S = 100; // USER_HZ: 100 on every Linux Node.js runs on

export type CpuGroups = Record<string, number>;
/** CPU seconds so far of each classified process, by pid (with its start time, so a
 *  reused pid is not taken for the same process). */
export type CpuSnapshot = Map<number, { group: string; secs: number; start: string }>;

/** Names what a process is: a group name, or undefined to leave it out. */
export type Classify = (pid: number, cmdline: string) => string | undefined;

// Postgres's postmaster (`…/bin/postgres -D …`): it reaps the backends, so the CPU of
// one that ended (a closed connection, an autovacuum worker) is in its children's time.
const isPostmaster = (cmd: string) => /(^|\/)postgres\s/.test(cmd) && !cmd.startsWith('postgres:');

/** The shared servers by their command lines; `pids` names further processes by pid. */
export function servers(pids: Record<string, number | undefined> = {}): Classify {
  const byPid = new Map(Object.entries(pids).filter(([, p]) => p !== undefined).map(([name, p]) => [p!, name]));
  return (pid, cmd) => {
    if (byPid.has(pid)) return byPid.get(pid);
    if (pid === process.pid) return 'bench process';
    if (cmd.startsWith('postgres:') || isPostmaster(cmd)) return 'Postgres';
    if (cmd.includes('redis-server')) return 'Redis';
    if (cmd.includes('clickhouse')) return 'ClickHouse';
    return undefined;
  };
}

/** CPU seconds (user + system) used so far by every classified process. */
export function cpuSnapshot(classify: Classify): CpuSnapshot | null {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return null;
  }
  const out: CpuSnapshot = new Map();
  for (const e of entries) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ');
      const group = classify(pid, cmd);
      if (!group) continue;
      // The fields after the command name (which may itself hold spaces and parentheses),
      // from field 3 on: utime 14, stime 15, cutime 16, cstime 17, starttime 22.
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]) + (isPostmaster(cmd) ? Number(f[13]) + Number(f[14]) : 0);
      out.set(pid, { group, secs: ticks / TICKS_PER_S, start: f[19] });
    } catch {
      // the process ended between the listing and the read
    }
  }
  return out;
}

/** Adds what each group used between two snapshots into `into`. A process that started in
 *  between counts whole; one that ended in between is missed, unless the postmaster
 *  reaped it (then all of its CPU counts, which for a short-lived backend is the same). */
export function addCpu(into: CpuGroups, before: CpuSnapshot | null, after: CpuSnapshot | null): void {
  if (!before || !after) return;
  for (const [pid, a] of after) {
    const b = before.get(pid);
    const same = b !== undefined && b.group === a.group && b.start === a.start;
    into[a.group] = (into[a.group] ?? 0) + Math.max(0, a.secs - (same ? b.secs : 0));
  }
}

/** Waits (up to `maxMs`) until the counted processes together use under a tenth of a core,
 *  so work left over from before (Redis freeing an unlinked hash in the background, an
 *  autovacuum) does not land in the next measurement. */
export async function settle(classify: Classify, maxMs = 5_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const before = cpuSnapshot(classify);
    if (!before) return;
    await new Promise((r) => setTimeout(r, 250));
    const used: CpuGroups = {};
    addCpu(used, before, cpuSnapshot(classify));
    if (Object.values(used).reduce((a, x) => a + x, 0) < 0.025) return;
  }
}

export const coreCount = () => cpus().length;
