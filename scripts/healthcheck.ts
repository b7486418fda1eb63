import { readFileSync } from 'node:fs';
import { loadConfigOrExit } from '../config';
import type { HeartbeatFile } from '../worker/heartbeat';

/**
 * The marketing-worker container's healthcheck (`node dist/healthcheck.mjs`): healthy
 * while the worker's last healthy heartbeat (worker/heartbeat.ts) is fresher than
 * HEARTBEAT_STALE_MS. Prints one line saying why, and exits 0 (healthy) or 1.
 */
const config = loadConfigOrExit();
let beat: HeartbeatFile;
try {
  beat = JSON.parse(readFileSync(config.WORKER_HEARTBEAT_FILE, 'utf8')) as HeartbeatFile;
} catch (err) {
  process.stdout.write(`unhealthy: no heartbeat file at ${config.WORKER_HEARTBEAT_FILE} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})\n`);
  process.exit(1);
}
const age = Date.now() - beat.healthyAt;
const problems = Object.entries(beat.checks ?? {}).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k} ${v}`);
if (!beat.healthyAt || age > config.HEARTBEAT_STALE_MS) {
  const last = beat.healthyAt ? `${Math.round(age / 1000)} s ago` : 'never';
  process.stdout.write(`unhealthy: last healthy heartbeat ${last}${problems.length ? `; ${problems.join('; ')}` : ''}\n`);
  process.exit(1);
}
process.stdout.write(`healthy: heartbeat ${Math.round(age / 1000)} s ago${problems.length ? ` (now failing: ${problems.join('; ')})` : ''}\n`);
process.exit(0);
