import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers';
import { createTestApp, demoSeed, SESSION_COOKIE, type TestApp } from './testing';

/** Live events over a real socket: EventSource-style clients get run and step changes. */

let t: TestApp;
let server: ServerType;
let base: string;
/** Listeners with no client connected (the app's metrics listen too). */
let idle: number;

beforeAll(async () => {
  t = await createTestApp({ seeds: [demoSeed('demo')], deps: { sse: { heartbeatMs: 200 } } });
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
  it('streams run and step events of a triggered run until it succeeds (token in the query)', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events?token=${t.token}`, { signal: ac.signal });
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
      return { ac, res: await fetch(`${base}/api/etl/events?token=${t.token}`, { signal: ac.signal }) };
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
    for (const q of ['', '?token=wrong']) {
      const res = await fetch(`${base}/api/etl/events${q}`);
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: { code: 'unauthorized', message: 'authentication required' } });
    }
  });

  it('ignores foreign messages on the channel and re-serialises events compactly', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/etl/events?token=${t.token}`, { signal: ac.signal });
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
});
