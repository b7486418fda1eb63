import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog, waitFor } from '../test/helpers';
import { createApp } from './app';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from './testing';

/** Live events over a real socket: EventSource-style clients get run and step changes. */

let t: TestApp;
let server: ServerType;
let base: string;
/** Listeners with no client connected (the app's metrics listen too). */
let idle: number;

beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('demo')], deps: { sse: { heartbeatMs: 200, sessionCheckMs: 200 } } });
  server = serve({ fetch: t.app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  idle = t.hub.size;
});
afterAll(async () => {
  await t?.hub.close(); // ends open streams so the server can close
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await t?.close();
});

interface Frame { data?: string; comment?: string; retry?: string }

/** Reads SSE frames from a fetch response until `until` returns true or the deadline passes. */
async function readFrames(res: Response, until: (f: Frame, all: Frame[]) => boolean, deadlineMs = 20_000): Promise<Frame[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const frames: Frame[] = [];
  let buf = '';
  const deadline = setTimeout(() => void reader.cancel(new Error('deadline')), deadlineMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`stream ended before the condition held; got ${JSON.stringify(frames.slice(-5))}`);
      buf += value;
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const f: Frame = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) f.comment = line.slice(1).trim();
          else if (line.startsWith('data: ')) f.data = (f.data ? `${f.data}\n` : '') + line.slice(6);
          else if (line.startsWith('retry: ')) f.retry = line.slice(7);
        }
        frames.push(f);
        if (until(f, frames)) return frames;
      }
    }
  } finally {
    clearTimeout(deadline);
    await reader.cancel().catch(() => {});
  }
}

const events = (frames: Frame[]) => frames.filter((f) => f.data).map((f) => JSON.parse(f.data!));

describe('GET /api/etl/events', () => {
  it('streams run and step events of a triggered run until it succeeds (token in the header)', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events`, { signal: ac.signal, headers: { authorization: `Bearer ${t.token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    await waitFor(() => t.hub.size === idle + 1, { what: 'the client to subscribe' });

    const trig = await fetch(`${base}/api/etl/pipelines/demo/trigger`, {
      method: 'POST', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, body: '{}',
    });
    expect(trig.status).toBe(202);
    const { runId } = await trig.json() as { runId: string };

    const frames = await readFrames(res, (f) => !!f.data && JSON.parse(f.data).runId === runId && JSON.parse(f.data).type === 'run'
      && JSON.parse(f.data).status === 'succeeded');
    expect(frames[0]).toMatchObject({ retry: '3000' });
    const mine = events(frames).filter((e) => e.runId === runId);
    expect(mine.filter((e) => e.type === 'run').map((e) => e.status)).toEqual(['queued', 'running', 'succeeded']);
    for (const step of ['fetch', 'transform', 'write']) {
      expect(mine.filter((e) => e.type === 'step' && e.step === step).map((e) => e.status)).toEqual(['running', 'succeeded']);
    }
    expect(mine.every((e) => e.pipelineId === 'demo')).toBe(true);
    ac.abort();
    // The server notices the disconnect and drops the listener.
    await waitFor(() => t.hub.size === idle, { what: 'the listener to be removed after disconnect' });
  });

  it('sends heartbeat comments and accepts a session cookie', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events`, { signal: ac.signal, headers: { cookie: `${SESSION_COOKIE}=${t.sessionId}` } });
    expect(res.status).toBe(200);
    const frames = await readFrames(res, (f) => f.comment === 'ping', 5_000);
    expect(frames.some((f) => f.comment === 'connected')).toBe(true);
    ac.abort();
    await waitFor(() => t.hub.size === idle, { what: 'the listener to be removed' });
  });

  it('fans out one subscription to several clients', async () => {
    const clients = await Promise.all([0, 1, 2].map(async () => {
      const ac = new AbortController();
      return { ac, res: await fetch(`${base}/api/etl/events`, { signal: ac.signal, headers: { authorization: `Bearer ${t.token}` } }) };
    }));
    await waitFor(() => t.hub.size === idle + 3, { what: 'three listeners' });
    const { runId } = await t.h.engine.trigger('demo');
    const got = await Promise.all(clients.map(({ res }) =>
      readFrames(res, (f) => !!f.data && JSON.parse(f.data).runId === runId && JSON.parse(f.data).status === 'succeeded' && JSON.parse(f.data).type === 'run')));
    for (const frames of got) expect(events(frames).some((e) => e.runId === runId && e.type === 'step')).toBe(true);
    for (const { ac } of clients) ac.abort();
    await waitFor(() => t.hub.size === idle, { what: 'all listeners removed' });
  });

  it('refuses unauthenticated and wrong-token clients with 401 JSON', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0000000000' }] as Record<string, string>[]) {
      const res = await fetch(`${base}/api/etl/events`, { headers });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: { code: 'unauthorized', message: 'authentication required' } });
    }
  });

  // Finding: the page opened SSE with ?token=<API token>, which lands in access logs.
  it('never accepts the API token in the URL; a one-time ticket works once', async () => {
    const inUrl = await fetch(`${base}/api/etl/events?token=${t.token}`);
    expect(inUrl.status).toBe(401);
    await inUrl.body?.cancel();
    const issued = await fetch(`${base}/api/etl/events/ticket`, {
      method: 'POST', headers: { cookie: `${SESSION_COOKIE}=${t.sessionId}`, origin: base, 'content-type': 'application/json' }, body: '{}',
    });
    expect(issued.status).toBe(201);
    const { ticket, expiresInSeconds } = await issued.json() as { ticket: string; expiresInSeconds: number };
    expect(expiresInSeconds).toBe(60);
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events?ticket=${ticket}`, { signal: ac.signal });
    expect(res.status).toBe(200);
    await readFrames(res, (f) => f.comment === 'connected', 5_000);
    ac.abort();
    const again = await fetch(`${base}/api/etl/events?ticket=${ticket}`);
    expect(again.status).toBe(401);
    await again.body?.cancel();
    expect((await fetch(`${base}/api/etl/events?ticket=${'A'.repeat(43)}`)).status).toBe(401);
    await waitFor(() => t.hub.size === idle, { what: 'the listener to be removed' });
  });

  // Finding: SSE never re-checked the session.
  it('ends a stream when its session is deleted, and at the session\'s expiry', async () => {
    const sid = await t.addSession(JSON.stringify({ user: { id: 'viewer' } }));
    const res = await fetch(`${base}/api/etl/events`, { headers: { cookie: `${SESSION_COOKIE}=${sid}` } });
    expect(res.status).toBe(200);
    await waitFor(() => t.hub.size === idle + 1, { what: 'subscribe' });
    await t.h.redis.del(`mc:sess:${sid}`);
    await waitFor(() => t.hub.size === idle, { timeoutMs: 5_000, what: 'the stream to end after logout' });
    await res.body?.cancel().catch(() => {});

    const soon = await t.addSession(JSON.stringify({ user: { id: 'viewer' }, expiresAt: new Date(Date.now() + 1_500).toISOString() }));
    const res2 = await fetch(`${base}/api/etl/events`, { headers: { cookie: `${SESSION_COOKIE}=${soon}` } });
    expect(res2.status).toBe(200);
    await waitFor(() => t.hub.size === idle + 1, { what: 'subscribe' });
    await waitFor(() => t.hub.size === idle, { timeoutMs: 5_000, what: 'the stream to end at expiry' });
    await res2.body?.cancel().catch(() => {});
  });

  // Finding: SSE had no connection cap.
  it('caps open streams per process: 503 past the cap, a slot frees when a client leaves', async () => {
    // Its own listener count: the app's metrics and read cache listen too.
    let listeners = 0;
    const subscribeEvents = () => {
      listeners++;
      return () => void listeners--;
    };
    const capped = createApp({
      db: t.h.db, redis: t.h.redis, engine: t.h.engine, log: silentLog, subscribeEvents,
      config: { apiToken: t.token, sessionCookie: SESSION_COOKIE }, sse: { maxStreams: 2 },
    });
    const baseline = listeners;
    const open = () => capped.request('/api/etl/events', { headers: { authorization: `Bearer ${t.token}` } });
    const a = await open();
    const b = await open();
    expect([a.status, b.status]).toEqual([200, 200]);
    const c = await open();
    expect(c.status).toBe(503);
    expect(await c.json()).toMatchObject({ error: { code: 'too_many_streams' } });
    await a.body!.cancel();
    await waitFor(async () => {
      const d = await open();
      if (d.status === 200) await d.body!.cancel();
      return d.status === 200;
    }, { timeoutMs: 5_000, what: 'a freed slot' });
    await b.body!.cancel();
    await waitFor(() => listeners === baseline, { timeoutMs: 5_000, what: 'the capped streams to be gone' });
  });

  it('ignores foreign messages on the channel and re-serialises events compactly', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events`, { signal: ac.signal, headers: { authorization: `Bearer ${t.token}` } });
    await waitFor(() => t.hub.size === idle + 1, { what: 'subscribe' });
    const channel = `etl:${t.h.queueName}:events`;
    await t.h.redis.publish(channel, 'not json');
    await t.h.redis.publish(channel, '{"type":"other","runId":"x"}');
    await t.h.redis.publish(channel, '{\n"type": "run",\n"runId": "r1",\n"status": "x"\n}');
    const frames = await readFrames(res, (f) => !!f.data);
    expect(frames.filter((f) => f.data).map((f) => f.data)).toEqual(['{"type":"run","runId":"r1","status":"x"}']);
    ac.abort();
    await waitFor(() => t.hub.size === idle, { what: 'unsubscribe' });
  });

  it('sends each event of a batched message (a JSON array) as its own frame, foreign entries dropped', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events`, { signal: ac.signal, headers: { authorization: `Bearer ${t.token}` } });
    await waitFor(() => t.hub.size === idle + 1, { what: 'subscribe' });
    await t.h.redis.publish(`etl:${t.h.queueName}:events`,
      '[{"type":"step","runId":"r2","step":"fetch","status":"succeeded"},{"type":"other"},null,{"type":"run","runId":"r2","status":"succeeded"}]');
    const frames = await readFrames(res, (f) => f.data?.includes('"type":"run"') ?? false);
    expect(frames.filter((f) => f.data).map((f) => f.data)).toEqual([
      '{"type":"step","runId":"r2","step":"fetch","status":"succeeded"}', '{"type":"run","runId":"r2","status":"succeeded"}',
    ]);
    ac.abort();
    await waitFor(() => t.hub.size === idle, { what: 'unsubscribe' });
  });
});
