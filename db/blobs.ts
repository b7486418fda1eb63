import pg from 'pg';

const BYTEA = 17;
const BYTES = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    format === 'binary' && oid === BYTEA ? (v: Buffer) => v : pg.types.getTypeParser(oid, format as 'text'),
};

type Q = Pick<pg.Pool, 'query'>;

/** Chunks of staged step output (etl_blobs). One chunk = one row, a few MB at most. */

export async function deleteBlobs(q: Q, runId: string, name: string): Promise<void> {
  await q.query('delete from etl_blobs where run_id = $1 and name = $2', [runId, name]);
}

/** `data` as a string, or as UTF-8 bytes (sent as they are, no string in between). */
export async function insertBlob(q: Q, a: { runId: string; name: string; seq: number; rows: number; data: string | Buffer }): Promise<void> {
  await q.query({
    name: 'etl-insert-blob',
    text: `insert into etl_blobs (run_id, name, seq, rows, data) values ($1, $2, $3, $4, $5)
           on conflict (run_id, name, seq) do update set rows = excluded.rows, data = excluded.data`,
    values: [a.runId, a.name, a.seq, a.rows, a.data],
  });
}

export async function readBlob(q: Q, runId: string, name: string, seq: number): Promise<string | null> {
  const { rows } = await q.query({
    name: 'etl-read-blob',
    text: 'select data from etl_blobs where run_id = $1 and name = $2 and seq = $3',
    values: [runId, name, seq],
  });
  return rows[0]?.data ?? null;
}

/** A chunk as its UTF-8 bytes (binary result format: no decoding into a string). */
export async function readBlobBytes(q: Q, runId: string, name: string, seq: number): Promise<Buffer | null> {
  // `binary` is a node-postgres query option that @types/pg does not list; without a
  // parser for binary bytea node-postgres would turn the bytes into a string.
  const config = {
    name: 'etl-read-blob-bytes',
    text: `select convert_to(data, 'UTF8') as data from etl_blobs where run_id = $1 and name = $2 and seq = $3`,
    values: [runId, name, seq],
    binary: true,
    types: BYTES,
  } as pg.QueryConfig;
  const { rows } = await q.query<{ data: Buffer }>(config);
  return rows[0]?.data ?? null;
}

/** Retention: staged data of runs finished more than `days` ago. A resume or rerun that
 *  needs it afterwards fails with a clear "expired" error from the reading step. */
export async function purgeExpiredBlobs(q: Q, days: number): Promise<number> {
  const r = await q.query(
    `delete from etl_blobs b using etl_runs r
     where b.run_id = r.id and r.finished_at < now() - make_interval(days => $1)`, [days]);
  return r.rowCount ?? 0;
}
