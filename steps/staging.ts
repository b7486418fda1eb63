import type { Database } from '../db/client';
import * as blobs from '../db/blobs';

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
}

export const isStagedRef = (v: unknown): v is StagedRef => (v as StagedRef | null)?.kind === 'staged';

export class StagingWriter {
  private buf: string[] = [];
  private bytes = 0;
  private seq = 0;
  private total = 0;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private db: Database,
    readonly runId: string,
    readonly name: string,
    private chunkBytes = 4 * 1024 * 1024,
  ) {}

  /** Appends one row; flushes a chunk when the buffer is full (awaits the previous flush,
   *  so at most two chunks are in memory). */
  async write(row: unknown): Promise<void> {
    const line = JSON.stringify(row);
    this.buf.push(line);
    this.bytes += line.length + 1;
    this.total++;
    if (this.bytes >= this.chunkBytes) await this.flush();
  }

  async writeMany(rows: readonly unknown[]): Promise<void> {
    for (const r of rows) await this.write(r);
  }

  private async flush(): Promise<void> {
    if (this.buf.length === 0) return;
    const data = Buffer.from(`${this.buf.join('\n')}\n`);
    const rows = this.buf.length;
    const seq = this.seq++;
    this.buf = [];
    this.bytes = 0;
    await this.pending;
    this.pending = blobs.insertBlob(this.db.pool, { runId: this.runId, name: this.name, seq, rows, data });
  }

  async close(): Promise<StagedRef> {
    await this.flush();
    await this.pending;
    return { kind: 'staged', runId: this.runId, name: this.name, chunks: this.seq, rows: this.total };
  }
}

export async function openStaging(db: Database, runId: string, name: string): Promise<StagingWriter> {
  await blobs.deleteBlobs(db.pool, runId, name);
  return new StagingWriter(db, runId, name);
}

/** Yields the staged rows chunk by chunk, prefetching the next chunk while one is used. */
export async function* readStaged<T = unknown>(db: Database, ref: StagedRef, signal?: AbortSignal): AsyncGenerator<T[]> {
  let next = ref.chunks > 0 ? blobs.readBlob(db.pool, ref.runId, ref.name, 0) : null;
  for (let seq = 0; seq < ref.chunks; seq++) {
    signal?.throwIfAborted();
    const data = await next!;
    if (!data) throw new Error(`staged data ${ref.name} of run ${ref.runId} is gone (chunk ${seq}); it may have expired`);
    next = seq + 1 < ref.chunks ? blobs.readBlob(db.pool, ref.runId, ref.name, seq + 1) : null;
    const text = data.toString('utf8');
    const rows: T[] = [];
    let start = 0;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', start)) {
      rows.push(JSON.parse(text.slice(start, i)) as T);
      start = i + 1;
    }
    yield rows;
  }
}

/** Writes one chunk directly (e.g. one API page = one chunk, seq = page number), so a
 *  resumed paginator can continue at the page it stopped at. Re-writing a seq replaces it. */
export async function writeChunk(db: Database, runId: string, name: string, seq: number, rows: readonly unknown[]): Promise<void> {
  const data = Buffer.from(rows.length ? `${rows.map((r) => JSON.stringify(r)).join('\n')}\n` : '');
  await blobs.insertBlob(db.pool, { runId, name, seq, rows: rows.length, data });
}
