import { z } from 'zod';
import type { Database } from '../db/client';
import * as blobs from '../db/blobs';
import { STAGING_CHUNK_BYTES } from './chunk-size';
import { rememberChunk } from './chunk-cache';

/**
 * Durable staging of rows between steps: a step writes its rows as NDJSON chunks into
 * Postgres (etl_blobs) and outputs a small reference; the next step, a retry or a resume
 * reads the chunks back. Memory stays bounded by one chunk, whatever the table size.
 * Each attempt writes under its own name, so a zombie attempt cannot corrupt the data a
 * later attempt publishes.
 */
export interface StagedRef {
  kind: 'staged';
  runId: string;
  name: string;
  chunks: number;
  rows: number;
  /** 'json' (default): one JSON value a line. 'keyed': a JSON-encoded key, a tab, then the
   *  JSON value — a hash sink can publish it without parsing the value again. */
  format?: 'json' | 'keyed';
}

export const isStagedRef = (v: unknown): v is StagedRef => (v as StagedRef | null)?.kind === 'staged';

/** A StagedRef as a step declares it in its input or output schema (extend it for more fields). */
export const stagedRefSchema = z.object({
  kind: z.literal('staged'),
  runId: z.string(),
  name: z.string(),
  chunks: z.number().int().min(0),
  rows: z.number().int().min(0),
  format: z.enum(['json', 'keyed']).optional(),
});

export class StagingWriter {
  private buf: string[] = [];
  private bytes = 0;
  private seq = 0;
  private total = 0;
  /** Chunk inserts in flight, at most two (on two pooled connections): the next chunk is
   *  built while Postgres stores the previous ones. */
  private pending: Promise<void>[] = [];

  constructor(
    private db: Database,
    readonly runId: string,
    readonly name: string,
    private chunkBytes = STAGING_CHUNK_BYTES,
    /** A step streams from these chunks (steps/stream.ts): keep them in chunk-cache.ts. */
    private streamed = false,
  ) {}

  /** Appends one row; flushes a chunk when the buffer is full (with at most two inserts
   *  in flight, so at most three chunks are in memory). */
  async write(row: unknown): Promise<void> {
    if (this.parts.length) await this.flush(); // bytes written before go first
    const line = JSON.stringify(row);
    this.buf.push(line);
    this.bytes += line.length + 1;
    this.total++;
    if (this.bytes >= this.chunkBytes) await this.flush();
  }

  async writeMany(rows: readonly unknown[]): Promise<void> {
    for (const r of rows) await this.write(r);
  }

  /** Appends lines that are already serialised (one row each, no newline inside). */
  async writeLines(lines: readonly string[]): Promise<void> {
    if (this.parts.length) await this.flush(); // bytes written before go first
    for (const line of lines) {
      this.buf.push(line);
      this.bytes += line.length + 1;
    }
    this.total += lines.length;
    if (this.bytes >= this.chunkBytes) await this.flush();
  }

  /** Appends whole NDJSON lines as bytes (`rows` of them, each ending in a newline). Bytes
   *  that would take the pending ones past a chunk go into the next chunk: a source that
   *  cuts just under the size (ClickHouse cuts at the last line end) must not make chunks
   *  of twice the size. */
  async writeBytes(data: Buffer, rows: number): Promise<void> {
    if (this.buf.length || (this.parts.length && this.partBytes + data.length > this.chunkBytes)) await this.flush();
    this.parts.push(data);
    this.partBytes += data.length;
    this.partRows += rows;
    this.total += rows;
    if (this.partBytes >= this.chunkBytes) await this.flush();
  }

  private parts: Buffer[] = [];
  private partBytes = 0;
  private partRows = 0;

  private async flush(): Promise<void> {
    let data: string | Buffer;
    let rows: number;
    if (this.buf.length) {
      data = `${this.buf.join('\n')}\n`;
      rows = this.buf.length;
      this.buf = [];
      this.bytes = 0;
    } else if (this.parts.length) {
      data = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.partBytes);
      rows = this.partRows;
      this.parts = [];
      this.partBytes = 0;
      this.partRows = 0;
    } else {
      return;
    }
    const seq = this.seq++;
    while (this.pending.length >= 2) await this.pending.shift();
    const insert = blobs.insertBlob(this.db.pool, { runId: this.runId, name: this.name, seq, rows, data });
    // Committed: a step streaming from this one in this process takes it from memory.
    if (this.streamed && Buffer.isBuffer(data)) {
      const bytes = data;
      insert.then(() => rememberChunk(this.runId, this.name, seq, bytes), () => {});
    }
    insert.catch(() => {}); // observed by a later flush or close
    this.pending.push(insert);
  }

  async close(format: 'json' | 'keyed' = 'json'): Promise<StagedRef> {
    await this.flush();
    await this.flush();
    // Every insert settles before close answers, even when one failed.
    const results = await Promise.allSettled(this.pending.splice(0));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    return { kind: 'staged', runId: this.runId, name: this.name, chunks: this.seq, rows: this.total, ...(format === 'keyed' ? { format } : {}) };
  }
}

export async function openStaging(db: Database, runId: string, name: string, o: { streamed?: boolean } = {}): Promise<StagingWriter> {
  await blobs.deleteBlobs(db.pool, runId, name);
  return new StagingWriter(db, runId, name, undefined, o.streamed);
}

/** Yields the staged chunks as UTF-8 bytes (whole lines each), reading up to `ahead`
 *  chunks ahead on as many pooled connections: Postgres takes about as long to fetch a
 *  chunk from TOAST as the transform takes to encode it. */
export async function* readStagedBytes(db: Database, ref: StagedRef, signal?: AbortSignal, ahead = 3): AsyncGenerator<Buffer> {
  const reads: Promise<Buffer | null>[] = [];
  let requested = 0;
  const request = () => {
    while (requested < ref.chunks && reads.length < ahead) {
      const read = blobs.readBlobBytes(db.pool, ref.runId, ref.name, requested++);
      read.catch(() => {}); // observed when its turn comes
      reads.push(read);
    }
  };
  for (let seq = 0; seq < ref.chunks; seq++) {
    signal?.throwIfAborted();
    request();
    const data = await reads.shift()!;
    if (data === null) throw new Error(`staged data ${ref.name} of run ${ref.runId} is gone (chunk ${seq}); it may have expired`);
    request();
    yield data;
  }
}

/** Yields the staged lines chunk by chunk (unparsed). */
export async function* readStagedLines(db: Database, ref: StagedRef, signal?: AbortSignal): AsyncGenerator<string[]> {
  for await (const chunk of readStagedBytes(db, ref, signal)) {
    const lines = chunk.toString('utf8').split('\n');
    lines.pop(); // the chunk ends with a newline
    yield lines;
  }
}

/** Yields the staged rows, parsed, chunk by chunk. */
export async function* readStaged<T = unknown>(db: Database, ref: StagedRef, signal?: AbortSignal): AsyncGenerator<T[]> {
  const keyed = ref.format === 'keyed';
  for await (const lines of readStagedLines(db, ref, signal)) {
    yield lines.map((l) => JSON.parse(keyed ? l.slice(l.indexOf('\t') + 1) : l) as T);
  }
}

/** Writes one chunk directly (e.g. one API page = one chunk, seq = page number), so a
 *  resumed paginator can continue at the page it stopped at. Re-writing a seq replaces it. */
export async function writeChunk(db: Database, runId: string, name: string, seq: number, rows: readonly unknown[]): Promise<void> {
  const data = rows.length ? `${rows.map((r) => JSON.stringify(r)).join('\n')}\n` : '';
  await blobs.insertBlob(db.pool, { runId, name, seq, rows: rows.length, data });
}
