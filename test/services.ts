import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, chmodSync, rmSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { waitFor } from './helpers';

/** Throwaway Redis and Postgres servers on free ports, for tests that kill or stop them. */

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

async function pingTcp(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export class ThrowawayRedis {
  private proc?: ChildProcess;
  constructor(readonly port: number) {}
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  static async start(): Promise<ThrowawayRedis> {
    const r = new ThrowawayRedis(await freePort());
    await r.start();
    return r;
  }
  async start(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitFor(() => pingTcp(this.port), { what: `redis on ${this.port}` });
  }
  /** SIGKILL: the data is gone, as in a crash of a Redis that keeps nothing on disk. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }
}

const PG_BIN = () => {
  const versions = readdirSync('/usr/lib/postgresql').sort();
  return `/usr/lib/postgresql/${versions[versions.length - 1]}/bin`;
};

/** A Postgres cluster of our own (initdb as user postgres, trust auth, no fsync). */
export class ThrowawayPostgres {
  private constructor(readonly dir: string, readonly port: number) {}
  get baseUrl() {
    return `postgres://postgres@127.0.0.1:${this.port}`;
  }
  static async start(): Promise<ThrowawayPostgres> {
    const dir = mkdtempSync(path.join(tmpdir(), 'etl-pg-'));
    chmodSync(dir, 0o777);
    const data = path.join(dir, 'data');
    const asPg = (cmd: string, args: string[]) =>
      execFileSync('runuser', ['-u', 'postgres', '--', path.join(PG_BIN(), cmd), ...args], { stdio: 'pipe' });
    asPg('initdb', ['-D', data, '--auth=trust', '--no-sync', '-U', 'postgres']);
    const pgs = new ThrowawayPostgres(dir, await freePort());
    (pgs as unknown as { asPg: typeof asPg }).asPg = asPg;
    await pgs.start();
    return pgs;
  }
  private run(args: string[]) {
    (this as unknown as { asPg(cmd: string, a: string[]): Buffer }).asPg('pg_ctl', args);
  }
  // pg_ctl runs synchronously; every caller awaits these, so a throw and a rejection are alike.
  start(): Promise<void> {
    this.run(['-D', path.join(this.dir, 'data'), '-o', `-p ${this.port} -k ${this.dir} -c fsync=off -c listen_addresses=127.0.0.1`, '-l', path.join(this.dir, 'log'), '-w', 'start']);
    return Promise.resolve();
  }
  stop(): Promise<void> {
    this.run(['-D', path.join(this.dir, 'data'), '-m', 'fast', '-w', 'stop']);
    return Promise.resolve();
  }
  async destroy(): Promise<void> {
    try {
      await this.stop();
    } catch {
      /* already stopped */
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A demo worker in its own process (test/fixtures/demo-worker.ts); resolves once ready. */
export async function spawnDemoWorker(env: Record<string, string>): Promise<ChildProcess & { exited: Promise<number | null> }> {
  const file = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures', 'demo-worker.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { exited: Promise<number | null> };
  child.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`demo worker exited ${code}: ${err.slice(-2000)}`)));
  });
  return child;
}
