import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, REDIS_URL, uid, waitFor } from '../test/helpers';
import { freePort } from '../test/services';
import { pipelineSeeds } from '../workflows';

/**
 * API_WORKERS=2: two api processes behind one port (node:cluster). Each request below is
 * pinned to a known process (a keep-alive socket whose /healthz told us its pid), so the
 * test can cause something through one process and watch it on the other: an SSE stream,
 * the read cache, and /metrics summed over the cluster.
 */

let db: Awaited<ReturnType<typeof freshDatabase>>;
let child: ChildProcess | undefined;
let port: number;
let output = '';
const TOKEN = `cluster-test-token-${uid('t')}`;
const auth = { authorization: `Bearer ${TOKEN}` };
let healthzCalls = 0;

interface Reply { status: number; body: string; res: IncomingMessage }
function call(agent: Agent | false, method: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent, headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text, res }));
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}
const pidOf = async (agent: Agent | false) => {
  healthzCalls++;
  return (JSON.parse((await call(agent, 'GET', '/healthz')).body) as { pid: number }).pid;
};
/** A one-socket keep-alive agent, and the pid of the process at its other end. */
async function pinned(): Promise<{ agent: Agent; pid: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return { agent, pid: await pidOf(agent) };
}
/** Opens pinned connections until one lands on a process other than `pid`. */
async function pinnedOther(pid: number): Promise<{ agent: Agent; pid: number }> {
  for (let i = 0; i < 20; i++) {
    const p = await pinned();
    if (p.pid !== pid) return p;
    p.agent.destroy();
  }
  throw new Error('every connection went to one process');
}

beforeAll(async () => {
  db = await freshDatabase(pipelineSeeds);
  port = await freePort();
  child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    env: { ...process.env, DATABASE_URL: db.url, REDIS_URL, PORT: String(port), ETL_API_TOKEN: TOKEN, ETL_QUEUE: uid('q'), API_WORKERS: '2', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (output += String(d)));
  child.stderr!.on('data', (d) => (output += String(d)));
  await waitFor(() => (output.match(/api listening/g) ?? []).length === 2, { timeoutMs: 40_000, what: `two api workers: ${output.slice(-500)}` });
});
afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await db?.drop();
});

describe('API_WORKERS=2', () => {
  let a: { agent: Agent; pid: number };
  let b: { agent: Agent; pid: number };

  it('answers on one port from two processes', async () => {
    a = await pinned();
    b = await pinnedOther(a.pid);
    expect(a.pid).not.toBe(b.pid);
    expect([a.pid, b.pid]).not.toContain(child!.pid); // the primary only forks
  });

  it('an SSE stream on one process receives the events of a run triggered through the other', async () => {
    // The stream rides on a's socket; the trigger goes through b.
    const frames: string[] = [];
    const stream = await new Promise<IncomingMessage>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/api/etl/events', agent: a.agent, headers: auth }, resolve).on('error', reject).end();
    });
    expect(stream.statusCode).toBe(200);
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => frames.push(d));
    await waitFor(() => frames.join('').includes(': connected'), { what: 'the stream to open' });

    const trig = await call(b.agent, 'POST', '/api/etl/pipelines/ch.top_dests/trigger', {});
    expect(trig.status).toBe(202);
    const { runId } = JSON.parse(trig.body) as { runId: string };
    const event = await waitFor(() => frames.join('').split('\n').find((l) => l.startsWith('data: ') && l.includes(runId)), { timeoutMs: 5_000, what: 'the run event on the other process' });
    expect(JSON.parse(event.slice(6))).toMatchObject({ type: 'run', runId, pipelineId: 'ch.top_dests', status: 'queued' });
    stream.destroy();
    a.agent.destroy();
    a = await pinned();
    if (a.pid === b.pid) {
      a.agent.destroy();
      a = await pinnedOther(b.pid);
    }
  });

  it("the read cache of one process drops a pipeline changed through the other", async () => {
    const get = async () => (JSON.parse((await call(a.agent, 'GET', '/api/etl/pipelines')).body) as { pipelines: { id: string; cron: string }[] })
      .pipelines.find((p) => p.id === 'yespo.OVAGO')!.cron;
    expect(await get()).toBe('0 4 * * *'); // cached in a now (1 s TTL)
    const t0 = Date.now();
    const put = await call(b.agent, 'PUT', '/api/etl/pipelines/yespo.OVAGO/cron', { cron: '5 4 * * *', timezone: 'Europe/Kyiv' });
    expect(put.status).toBe(200);
    // Seen well inside the 1 s TTL: only the event explains it.
    await waitFor(async () => (await get()) === '5 4 * * *', { timeoutMs: 800, intervalMs: 20, what: 'process a to see the new cron' });
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it('/metrics on either process counts the requests of both, and Postgres gauges once', async () => {
    await pidOf(a.agent);
    await pidOf(b.agent);
    for (const x of [a, b]) {
      const text = (await call(x.agent, 'GET', '/metrics')).body;
      const healthz = [...text.matchAll(/^http_requests_total\{[^}]*route="\/healthz"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
      expect(healthz, `metrics via ${x.pid}`).toBe(healthzCalls);
      expect(text).toMatch(/^etl_runs\{pipeline="ch\.top_dests",status="queued"\} 1$/m);
    }
  });

  it('stops both workers and exits 0 on SIGTERM', async () => {
    a.agent.destroy();
    b.agent.destroy();
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).not.toContain(TOKEN);
  });
});
