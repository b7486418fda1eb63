import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Database } from '../db/client';
import * as blobs from '../db/blobs';
import { takeChunk } from './chunk-cache';
import { sleep } from './rate-limit';
import { streamSourceState, type StreamSourceState } from '../db/steps';
import { NonRetryableError, StepAbortedError, StepYieldError } from '../lib/errors';
import type { StepContext } from './define';
import { stagedRefSchema, type StagedRef } from './staging';

/**
 * Streams between overlapped steps (workflows/engine/ARCHITECTURE.md "Overlapped steps").
 * A producer announces, in its checkpoint, the chunk name it writes each dataset under
 * (and, once closed, its chunk and row counts); a consumer follows the announced chunks
 * in seq order as they are committed. The chunks of one announcement are an *epoch*: if
 * the producer starts a new attempt under a new name, the consumer starts over on it.
 */

export const streamAnnouncementSchema = z.object({
  runId: z.string(), name: z.string(), attempt: z.number().int(), chunks: z.number().int().optional(), rows: z.number().int().optional(),
});
export type StreamAnnouncement = z.infer<typeof streamAnnouncementSchema>;
const checkpointSchema = z.object({ streams: z.record(z.string(), streamAnnouncementSchema) });
const outputSchema = z.object({ datasets: z.record(z.string(), stagedRefSchema) });

/** Where one dataset's chunks are: the run and name they are stored under. */
export interface StreamId { runId: string; name: string }
export const sameStream = (a: StreamId, b: StreamId) => a.runId === b.runId && a.name === b.name;

/** A producer's side: what it announces in its checkpoint, dataset by dataset. */
export function createAnnouncer(ctx: Pick<StepContext, 'saveCheckpoint' | 'attempt'>) {
  const streams: Record<string, StreamAnnouncement> = {};
  return {
    async open(dataset: string, id: StreamId) {
      streams[dataset] = { ...id, attempt: ctx.attempt };
      await ctx.saveCheckpoint({ streams });
    },
    async close(dataset: string, ref: Pick<StagedRef, 'runId' | 'name' | 'chunks' | 'rows'>) {
      streams[dataset] = { runId: ref.runId, name: ref.name, attempt: ctx.attempt, chunks: ref.chunks, rows: ref.rows };
      await ctx.saveCheckpoint({ streams });
    },
  };
}

/** Thrown by `Upstream.chunk` when the producer moved to a new epoch: start over. */
export class EpochMoved extends Error {
  constructor() {
    super('the step streamed from started a new attempt');
  }
}

export interface StreamPosition { id: StreamId; closed?: { chunks: number; rows: number } }

const POLL_MIN_MS = 25;
const POLL_MAX_MS = 200;
/** A consumer hands its step back after its producer has not been running this long. */
export const IDLE_YIELD_MS = 2_000;

/**
 * The consumer's side: follows the producer step `key` of the same run. `position(ds)`
 * says where a dataset's chunks are (waiting for the announcement); `chunk(ds, id, seq)`
 * gives chunk `seq` of that epoch, waiting for it; null once the dataset is closed and
 * `seq` is past its end. Throws EpochMoved when the producer's announcement changed,
 * NonRetryableError when the producer failed for good, StepAbortedError when the run was
 * cancelled, StepYieldError when the producer has not been running for a while.
 */
export class Upstream {
  private state: StreamSourceState | null = null;
  private idleSince: number | undefined;
  private reads = new Map<string, Promise<Buffer | null>>();

  constructor(private db: Database, private runId: string, readonly key: string, private signal: AbortSignal, private ahead = 3) {}

  /** Re-reads the producer's row; judges it. */
  private async refresh(): Promise<StreamSourceState> {
    const st = await streamSourceState(this.db.pool, this.runId, this.key);
    if (!st) throw new NonRetryableError(`this run has no step ${this.key} to stream from`);
    this.state = st;
    // Once the producer has succeeded, this follows nothing live: whether the run may
    // still publish is for the consumer's own fences to decide.
    if (st.status === 'succeeded') return st;
    if (st.status === 'cancelled' || st.runStatus === 'cancelled') throw new StepAbortedError('run cancelled', 'cancelled');
    if (st.status === 'failed' || st.runStatus === 'failed') {
      throw new NonRetryableError(`step ${this.key} failed${st.error ? `: ${st.error.slice(0, 300)}` : ''}`);
    }
    if (st.status === 'running' || st.status === 'skipped') this.idleSince = undefined;
    else if ((this.idleSince ??= Date.now()) < Date.now() - IDLE_YIELD_MS) {
      throw new StepYieldError(`waiting for step ${this.key}, which is not running (${st.status})`);
    }
    return st;
  }

  /** The dataset's epoch and, once closed, its size; null while not announced. */
  private positionOf(st: StreamSourceState, dataset: string): StreamPosition | null {
    if (st.status === 'succeeded') {
      const out = outputSchema.safeParse(st.output);
      const ref = out.success ? out.data.datasets[dataset] : undefined;
      if (!ref) throw new NonRetryableError(`step ${this.key} succeeded without dataset ${dataset}; rerun from ${this.key}`);
      return { id: { runId: ref.runId, name: ref.name }, closed: { chunks: ref.chunks, rows: ref.rows } };
    }
    if (st.status !== 'running') return null;
    const cp = checkpointSchema.safeParse(st.checkpoint);
    const a = cp.success ? cp.data.streams[dataset] : undefined;
    // An announcement of an earlier attempt is stale: that epoch was abandoned.
    if (!a || a.attempt !== st.attempts) return null;
    return { id: { runId: a.runId, name: a.name }, ...(a.chunks !== undefined ? { closed: { chunks: a.chunks, rows: a.rows ?? 0 } } : {}) };
  }

  /** Waits for the dataset's announcement. */
  async position(dataset: string): Promise<StreamPosition> {
    for (let wait = POLL_MIN_MS; ; wait = Math.min(POLL_MAX_MS, wait * 2)) {
      const pos = this.positionOf(await this.refresh(), dataset);
      if (pos) return pos;
      await this.sleep(wait);
    }
  }

  /** Waits for the producer to succeed; its output. */
  async finished(): Promise<unknown> {
    for (let wait = POLL_MIN_MS; ; wait = Math.min(POLL_MAX_MS, wait * 2)) {
      const st = await this.refresh();
      if (st.status === 'succeeded') return st.output;
      await this.sleep(wait);
    }
  }

  /** Chunk `seq` of the epoch `id` of `dataset`, or null past its end. */
  async chunk(dataset: string, id: StreamId, seq: number): Promise<Buffer | null> {
    for (let wait = POLL_MIN_MS; ; wait = Math.min(POLL_MAX_MS, wait * 2)) {
      this.signal.throwIfAborted();
      const data = await this.read(id, seq);
      if (data) {
        for (let k = 1; k < this.ahead; k++) this.prefetch(id, seq + k);
        return data;
      }
      const pos = this.positionOf(await this.refresh(), dataset);
      if (pos && !sameStream(pos.id, id)) throw new EpochMoved();
      if (pos?.closed && seq >= pos.closed.chunks) return null;
      // A closed (or succeeded) epoch has every chunk it counts: one missing is gone.
      if (pos?.closed) {
        const again = await this.read(id, seq);
        if (again) return again;
        throw new Error(`staged data ${id.name} of run ${id.runId} is gone (chunk ${seq}); it may have expired`);
      }
      if (!pos && this.state?.status === 'running') throw new EpochMoved(); // the announcement went: a new attempt
      await this.sleep(wait);
    }
  }

  private readKey = (id: StreamId, seq: number) => `${id.runId}/${id.name}/${seq}`;

  private prefetch(id: StreamId, seq: number) {
    const k = this.readKey(id, seq);
    if (this.reads.has(k)) return;
    // Committed by a step in this process a moment ago: no need to read it back.
    const mine = takeChunk(id.runId, id.name, seq);
    const p = mine ? Promise.resolve(mine) : blobs.readBlobBytes(this.db.pool, id.runId, id.name, seq);
    p.catch(() => {}); // observed when its turn comes
    this.reads.set(k, p);
  }

  private async read(id: StreamId, seq: number): Promise<Buffer | null> {
    const k = this.readKey(id, seq);
    // Committed here since a read ahead found nothing: take it from memory.
    const mine = takeChunk(id.runId, id.name, seq);
    if (mine) {
      this.reads.delete(k);
      return mine;
    }
    this.prefetch(id, seq);
    const p = this.reads.get(k)!;
    this.reads.delete(k);
    return await p;
  }

  private sleep(ms: number) {
    return sleep(ms, this.signal);
  }
}

/** A short, stable name part for an epoch and the config that shapes a consumer's output. */
export function streamTag(...parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}
