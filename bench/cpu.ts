import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/**
 * CPU time by process, read from Linux's /proc: what a benchmark's work costs each process
 * it touches (its workers, Postgres, Redis, ClickHouse, the bench itself). On a machine
 * where they all share the cores, the sum bounds the rate: `cores / CPU per unit of work`.
 * Elsewhere (no /proc) every figure is NaN and the rows say so.
 */
const TICKS_PER_S = 100; // USER_HZ: 100 on every Linux Node.js runs on

export type CpuGroups = Record<string, number>;
/** CPU seconds so far of each classified process, by pid. */
export type CpuSnapshot = Map<number, { group: string; secs: number }>;

/** Names what a process is: a group name, or undefined to leave it out. */
export type Classify = (pid: number, cmdline: string) => string | undefined;

/** The shared servers by their command lines; `pids` names further processes by pid. */
export function servers(pids: Record<string, number | undefined> = {}): Classify {
  const byPid = new Map(Object.entries(pids).filter(([, p]) => p !== undefined).map(([name, p]) => [p!, name]));
  return (pid, cmd) => {
    if (byPid.has(pid)) return byPid.get(pid);
    if (pid === process.pid) return 'bench process';
    if (cmd.startsWith('postgres')) return 'Postgres';
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
      // Fields after the command name, which may itself hold spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, { group, secs: (Number(f[11]) + Number(f[12])) / TICKS_PER_S });
    } catch {
      // the process ended between the listing and the read
    }
  }
  return out;
}

/** Adds what each group used between two snapshots into `into`. A process that started in
 *  between counts whole; one that ended in between is missed (its last CPU is gone with it). */
export function addCpu(into: CpuGroups, before: CpuSnapshot | null, after: CpuSnapshot | null): void {
  if (!before || !after) return;
  for (const [pid, a] of after) {
    const b = before.get(pid);
    into[a.group] = (into[a.group] ?? 0) + Math.max(0, a.secs - (b?.group === a.group ? b.secs : 0));
  }
}

export const coreCount = () => cpus().length;
