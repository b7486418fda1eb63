import type { Redis } from 'ioredis';

/** Builds a dataset under its build key; writeRedisDataset feeds it rows or staged chunks,
 *  then publishes what it reports. */
export interface DatasetBuilder {
  /** Rows built: hash fields (after de-duplication) or JSON array elements. */
  readonly rows: number;
  /** Bytes of the values (UTF-8), hash field names included. */
  readonly bytes: number;
  /** Rows whose hash field repeated an earlier row's; valid after finish(). */
  readonly duplicates: number;
  /** What the build key must hold for the swap: HLEN for a hash, STRLEN for JSON. */
  readonly size: number;
  add(batch: readonly Record<string, unknown>[]): Promise<void>;
  addChunk(chunk: Buffer): Promise<void>;
  /** Sends what is buffered and waits for every write. */
  finish(): Promise<void>;
  /** After a failure: waits for the writes in flight, whatever their outcome. */
  settle(): Promise<void>;
}

/** Keeps at most one pipeline round in flight while the next one is being built, so the
 *  JSON encoding overlaps the network round trip and memory stays at two rounds. */
export class RoundSender {
  private inflight: Promise<unknown>[] = [];
  /** The previous round's handling: rounds are handled strictly in the order sent.
   *  (Their replies arrive in order, but two pipelines answered by one socket read can
   *  settle in either order.) */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(protected redis: Redis) {}

  /** Sends a round once fewer than `maxInflight` are in flight; `onReplies` runs in the
   *  order the rounds were sent. */
  protected async send(
    fill: (p: ReturnType<Redis['pipeline']>) => void,
    onReplies: (replies: unknown[]) => void,
    /** The first failed command's error, given the replies of the commands before it. */
    mapError: (err: unknown, before: unknown[]) => unknown = (err) => err,
    maxInflight = 1,
  ): Promise<void> {
    while (this.inflight.length >= maxInflight) await this.inflight.shift();
    const p = this.redis.pipeline();
    fill(p);
    const exec = p.exec();
    exec.catch(() => {}); // handled below, after the previous round
    const run = this.tail.then(() => exec).then((res) => {
      const replies: unknown[] = [];
      for (const [err, reply] of res ?? []) {
        if (err) throw mapError(err, replies);
        replies.push(reply);
      }
      onReplies(replies);
    });
    run.catch(() => {}); // observed by a later send(), drain() or settle()
    this.tail = run.catch(() => {});
    this.inflight.push(run);
  }

  async drain(): Promise<void> {
    while (this.inflight.length) await this.inflight.shift();
  }

  async settle(): Promise<void> {
    const all = this.inflight;
    this.inflight = [];
    await Promise.allSettled(all);
  }
}
