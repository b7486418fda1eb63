import type { Redis } from 'ioredis';

/**
 * Which workers are alive, as the api and the /etl page see it. Each worker's heartbeat
 * (worker/heartbeat.ts) adds itself to a sorted set scored by the time of its last
 * healthy beat, and keeps a detail key that expires on its own. Only healthy beats are
 * recorded, so "seen in the last minute" means "was taking jobs in the last minute".
 */
export const workersKey = (queueName: string) => `etl:${queueName}:workers`;
export const workerKey = (queueName: string, workerId: string) => `etl:${queueName}:worker:${workerId}`;

/** A worker counts as alive when its last healthy beat is this recent. */
export const WORKER_ALIVE_MS = 60_000;
/** Beats older than this are forgotten (and "last seen" reads as never). */
const FORGET_MS = 7 * 86_400_000;

export interface WorkerBeat {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  at: string;
  /** Steps running in this worker right now. */
  active: number;
}

export async function recordBeat(redis: Redis, queueName: string, beat: WorkerBeat): Promise<void> {
  const now = Date.parse(beat.at);
  await redis.multi()
    .zadd(workersKey(queueName), now, beat.id)
    .zremrangebyscore(workersKey(queueName), '-inf', now - FORGET_MS)
    .set(workerKey(queueName, beat.id), JSON.stringify(beat), 'PX', WORKER_ALIVE_MS * 2)
    .exec();
}

/** A worker that stops cleanly says so, so the page does not count it for a minute more. */
export async function forgetWorker(redis: Redis, queueName: string, workerId: string): Promise<void> {
  await redis.multi().zrem(workersKey(queueName), workerId).del(workerKey(queueName, workerId)).exec();
}

export interface WorkersSeen {
  /** Workers with a healthy beat in the last minute. */
  alive: number;
  ids: string[];
  /** The newest healthy beat of any worker, or null if none was seen (in the last week). */
  lastSeenAt: string | null;
}

export async function workersSeen(redis: Redis, queueName: string, now = Date.now()): Promise<WorkersSeen> {
  const [recent, newest] = await Promise.all([
    redis.zrangebyscore(workersKey(queueName), now - WORKER_ALIVE_MS, '+inf'),
    redis.zrange(workersKey(queueName), -1, -1, 'WITHSCORES'),
  ]);
  return {
    alive: recent.length,
    ids: recent.slice(0, 50),
    lastSeenAt: newest.length === 2 ? new Date(Number(newest[1])).toISOString() : null,
  };
}
