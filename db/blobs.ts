import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { withClient } from './tx';

type Q = Pick<pg.Pool, 'query'>;

/** Chunks of staged step output (etl_blobs). One chunk = one row, a few MB at most. */

export async function deleteBlobs(q: Q, runId: string, name: string): Promise<void> {
  await q.query('delete from etl_blobs where run_id = $1 and name = $2', [runId, name]);
}

/** `data` as a string, or as UTF-8 bytes (sent as they are, no string in between). */
export async function insertBlob(q: Q, a: { runId: string; name: string; seq: number; rows: number; data: string | Buffer }): Promise<void> {
  await q.query({
    name: 'etl-insert-blob',
    // Committed without waiting for the WAL flush (synchronous_commit off, for this
    // statement only): a chunk is relied on only once the step that wrote it is recorded
    // (or, for a paginator, its page cursor saved), and that commit is synchronous, so it
    // flushes the WAL up to and including every chunk committed before it. A crash before
    // then loses at most chunks of an attempt that is run again anyway.
    text: `with async_commit as (select set_config('synchronous_commit', 'off', true))
           insert into etl_blobs (run_id, name, seq, rows, data) select $1, $2, $3, $4, $5 from async_commit
           on conflict (run_id, name, seq) do update set rows = excluded.rows, data = excluded.data`,
    values: [a.runId, a.name, a.seq, a.rows, a.data],
  });
}

/** Rows of each chunk of a name, for the contiguous chunks from seq 0 (a gap ends the list). */
export async function chunkRows(q: Q, runId: string, name: string): Promise<number[]> {
  const { rows } = await q.query<{ seq: number; rows: number }>(
    'select seq, rows from etl_blobs where run_id = $1 and name = $2 order by seq', [runId, name]);
  const out: number[] = [];
  for (const r of rows) {
    if (r.seq !== out.length) break;
    out.push(r.rows);
  }
  return out;
}

/** Inserts (or replaces) one chunk only while the step's attempt is the live one: a
 *  streaming step's chunks are shared by its attempts, so a superseded attempt must not
 *  write. False when the fence refused. */
export async function insertBlobFenced(q: Q, a: {
  runId: string; name: string; seq: number; rows: number; data: string | Buffer; step: string; attempt: number;
}): Promise<boolean> {
  const r = await q.query({
    name: 'etl-insert-blob-fenced',
    text: `with async_commit as (select set_config('synchronous_commit', 'off', true))
           insert into etl_blobs (run_id, name, seq, rows, data) select $1, $2, $3, $4, $5 from async_commit
           where exists (select 1 from etl_run_steps where run_id = $1 and key = $6 and attempts = $7 and status = 'running')
           on conflict (run_id, name, seq) do update set rows = excluded.rows, data = excluded.data`,
    values: [a.runId, a.name, a.seq, a.rows, a.data, a.step, a.attempt],
  });
  return r.rowCount === 1;
}

/**
 * A chunk as its UTF-8 bytes. Through `COPY … TO STDOUT (FORMAT binary)`, which hands
 * over the value's bytes as they are: node-postgres decodes every result field into a
 * string (even in binary result mode), and decoding megabyte chunks into strings and encoding
 * them back cost the transform and the write about a fifth of their time.
 */
export async function readBlobBytes(pool: pg.Pool, runId: string, name: string, seq: number): Promise<Buffer | null> {
  // A COPY that failed half-way leaves the connection in an unknown state: drop it.
  return withClient(pool, async (client) => {
    // COPY takes no parameters: the values are quoted literals.
    const sql = `copy (select convert_to(data, 'UTF8') from etl_blobs where run_id = ${client.escapeLiteral(runId)}::uuid
      and name = ${client.escapeLiteral(name)} and seq = ${Number(seq) | 0}) to stdout (format binary)`;
    const stream = client.query(copyTo(sql));
    const parts: Buffer[] = [];
    let size = 0;
    for await (const piece of stream as AsyncIterable<Buffer>) {
      parts.push(piece);
      size += piece.length;
    }
    return parseBinaryCopyOneField(Buffer.concat(parts, size));
  }, { dropOnError: true });
}

const COPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/** The single field of the single row (or null when no row) of a binary COPY. */
function parseBinaryCopyOneField(b: Buffer): Buffer | null {
  if (b.length < 21 || !b.subarray(0, 11).equals(COPY_SIGNATURE)) throw new Error('unexpected COPY output (no binary signature)');
  let p = 11 + 4; // flags
  p += 4 + b.readUInt32BE(p); // header extension
  const fields = b.readInt16BE(p);
  p += 2;
  if (fields === -1) return null; // the trailer: no row
  if (fields !== 1) throw new Error(`unexpected COPY output (${fields} fields)`);
  const len = b.readInt32BE(p);
  p += 4;
  if (len < 0) return null;
  return b.subarray(p, p + len);
}

/** Retention: staged data of runs finished more than `days` ago. A resume or rerun that
 *  needs it afterwards fails with a clear "expired" error from the reading step. */
export async function purgeExpiredBlobs(q: Q, days: number): Promise<number> {
  const r = await q.query(
    `delete from etl_blobs b using etl_runs r
     where b.run_id = r.id and r.finished_at < now() - make_interval(days => $1)`, [days]);
  return r.rowCount ?? 0;
}
