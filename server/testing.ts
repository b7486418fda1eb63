import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { createHarness, demoSeed, type Harness } from '../test/engine-harness';
import { demoWorkflow } from '../test/fixtures/demo';
import { createLogger } from '../lib/logger';
import { createRegistry } from '../workflows/engine/define';
import { eventsChannel } from '../workflows/engine/events';
import { createApp } from './app';
import type { AppDeps } from './context';
import { createEventHub, type EventHub } from './sse';

/**
 * A real app over the engine harness (fresh Postgres database, real Redis, own queue):
 * the token, session cookie and log lines are captured so tests can check none leaks.
 */

export const SESSION_COOKIE = 'mc_sess_test';

export interface TestApp {
  h: Harness;
  app: ReturnType<typeof createApp>;
  hub: EventHub;
  token: string;
  /** A valid operator (role admin) session id stored at mc:sess:<id>. */
  sessionId: string;
  logs: string[];
  /** Every response body seen through `call`. */
  bodies: string[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed JSON of any endpoint, walked by the tests' assertions (as the no-unsafe-* exemption for tests says)
  call(method: string, path: string, o?: CallOptions): Promise<{ status: number; body: any; text: string; headers: Headers }>;
  /** POST /pipelines/:id/trigger (expects 202), then waits for the run to reach `status`. */
  triggerAndWait(pipeline: string, status: string, body?: unknown): Promise<string>;
  addSession(value: string): Promise<string>;
  close(): Promise<void>;
}

export interface CallOptions {
  auth?: 'token' | 'cookie' | 'none';
  /** JSON-encoded unless a string. */
  body?: unknown;
  headers?: Record<string, string>;
}

export async function createTestApp(o: {
  seeds?: ReturnType<typeof demoSeed>[];
  startWorker?: boolean;
  deps?: Partial<AppDeps>;
  /** Merged into the app's config (the token and cookie name stay the test's). */
  config?: Partial<AppDeps['config']>;
} = {}): Promise<TestApp> {
  const h = await createHarness({ seeds: o.seeds, startWorker: o.startWorker });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const log = createLogger({ level: 'debug', destination: sink });
  const hub = await createEventHub(new Redis(h.redisUrl), eventsChannel(h.queueName), log);
  const token = `tok_${randomBytes(24).toString('hex')}`;
  const sessionKeys: string[] = [];
  const addSession = async (value: string) => {
    const id = randomBytes(18).toString('base64url');
    sessionKeys.push(`mc:sess:${id}`);
    await h.redis.set(`mc:sess:${id}`, value, 'EX', 600);
    return id;
  };
  // The default session is an operator; tests add viewer and odd sessions with addSession.
  const sessionId = await addSession(JSON.stringify({ user: { id: 'u1', email: 'ops@example.com', role: 'admin' } }));
  const app = createApp({
    db: h.db, redis: h.redis, engine: h.engine, log,
    config: { apiToken: token, sessionCookie: SESSION_COOKIE, ...o.config },
    subscribeEvents: hub.subscribe,
    registry: createRegistry([demoWorkflow]),
    webDir: 'web/dist',
    sandbox: (p) => Promise.resolve(p.id === 'sandboxed'),
    ...o.deps,
  });
  const bodies: string[] = [];

  const t: TestApp = {
    h, app, hub, token, sessionId, logs, bodies, addSession,
    async triggerAndWait(pipeline, status, body) {
      const r = await t.call('POST', `/api/etl/pipelines/${pipeline}/trigger`, { body });
      if (r.status !== 202) throw new Error(`trigger ${pipeline}: ${r.status} ${r.text}`);
      const { runId } = r.body as { runId: string };
      await h.waitRun(runId, status);
      return runId;
    },
    async call(method, path, c = {}) {
      const headers: Record<string, string> = { ...c.headers };
      const auth = c.auth ?? 'token';
      if (auth === 'token') headers.authorization ??= `Bearer ${token}`;
      if (auth === 'cookie') headers.cookie ??= `${SESSION_COOKIE}=${sessionId}`;
      let body: string | undefined;
      if (c.body !== undefined) {
        body = typeof c.body === 'string' ? c.body : JSON.stringify(c.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await app.request(path, { method, headers, body });
      const text = await res.text();
      bodies.push(text);
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON (metrics, static files) */
      }
      return { status: res.status, body: parsed, text, headers: res.headers };
    },
    async close() {
      await hub.close();
      if (sessionKeys.length) await h.redis.del(...sessionKeys);
      await h.close();
    },
  };
  return t;
}

export { demoSeed };
