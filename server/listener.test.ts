import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import { freshDatabase, REDIS_URL, silentLog, uid } from '../test/helpers';
import { pipelineSeeds } from '../workflows';
import { createEtlApi, etlFastifyPlugin, type EtlApi } from './listener';

/**
 * /api/etl/* served from inside an existing Fastify server (SP0's api), through the Node
 * request listener: the SP0 session cookie, the origin check on a mutation, request
 * bodies Fastify leaves unread for us, SSE, and the host's own routes untouched.
 */

let db: Awaited<ReturnType<typeof freshDatabase>>;
let api: EtlApi;
let fastify: FastifyInstance;
let redis: Redis;
let base: string;
const sid = `sess${uid('x')}`;

beforeAll(async () => {
  db = await freshDatabase(pipelineSeeds);
  redis = new Redis(REDIS_URL);
  await redis.set(`mc:sess:${sid}`, JSON.stringify({ user: { id: 'u-42', role: 'admin' } }), 'EX', 600);
  const config = loadConfig({ DATABASE_URL: db.url, REDIS_URL, ETL_QUEUE: uid('q'), LOG_LEVEL: 'silent' });
  api = await createEtlApi(config, { log: silentLog });
  fastify = Fastify();
  // SP0's own routes and body parsing stay as they were.
  fastify.get('/api/sp0/hello', () => Promise.resolve({ from: 'sp0' }));
  fastify.post('/api/sp0/echo', (req) => Promise.resolve({ got: req.body }));
  await fastify.register(etlFastifyPlugin(api));
  base = await fastify.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await api?.endStreams();
  await fastify?.close();
  await api?.close();
  await redis?.del(`mc:sess:${sid}`);
  redis?.disconnect();
  await db?.drop();
});

const cookie = () => `mc_sess=${sid}`;

describe('the api mounted on Fastify', () => {
  it('serves GET /api/etl/pipelines with the SP0 session cookie, 401 without', async () => {
    const res = await fetch(`${base}/api/etl/pipelines`, { headers: { cookie: cookie() } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { pipelines: { id: string }[] };
    expect(body.pipelines.map((p) => p.id).sort()).toEqual(pipelineSeeds.map((p) => p.id).sort());
    expect((await fetch(`${base}/api/etl/pipelines`)).status).toBe(401);
    expect(await (await fetch(`${base}/api/sp0/hello`)).json()).toEqual({ from: 'sp0' });
    expect(await (await fetch(`${base}/api/sp0/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' })).json()).toEqual({ got: { a: 1 } });
  });

  it('checks the origin of a cookie mutation, and reads its body through Fastify', async () => {
    const host = new URL(base).host;
    const enable = (origin: string, body = '{"enabled":true}') => fetch(`${base}/api/etl/pipelines/ch.top_dests/enable`, {
      method: 'POST', body, headers: { cookie: cookie(), origin, 'content-type': 'application/json' },
    });
    const cross = await enable('https://evil.example');
    expect(cross.status).toBe(403);
    expect(((await cross.json()) as { error: { code: string } }).error.code).toBe('csrf');
    expect((await db.pool.query(`select enabled from etl_pipelines where id = 'ch.top_dests'`)).rows[0].enabled).toBe(false);

    const same = await enable(`http://${host}`);
    expect(same.status).toBe(200);
    expect(((await same.json()) as { pipeline: { enabled: boolean } }).pipeline.enabled).toBe(true);
    expect((await db.pool.query(`select enabled from etl_pipelines where id = 'ch.top_dests'`)).rows[0].enabled).toBe(true);
    // The body reached our validation: a bad one is our 400, not Fastify's.
    const bad = await enable(`http://${host}`, '{"enabled":"yes"}');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_input');
  });

  it('streams /api/etl/events (SSE) through the Fastify server', async () => {
    const ctrl = new AbortController();
    const res = await fetch(`${base}/api/etl/events`, { headers: { cookie: cookie() }, signal: ctrl.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain(': connected');
    ctrl.abort();
  });
});
