import pg from 'pg';
import type { Database } from '../../db/client';
import type { Logger } from '../../lib/logger';
import { withDbRetry } from '../../lib/pg-retry';

type Q = Pick<pg.Pool, 'query'>;

/**
 * Group commit for the runner's state statements (claims and completions). A statement
 * asked for while the worker is idle goes out at once, alone, as before. Statements asked
 * for while others are in flight wait for one of them, then go together: in one
 * transaction, written in one go on a pipelined connection (BEGIN, each statement as it
 * is, COMMIT), so N of them cost one round trip and one commit instead of N.
 *
 * Each statement is the same guarded statement it is alone, and runs after the ones
 * before it in the group, exactly as if they had been sent one after another; nobody
 * hears of any result before the COMMIT is confirmed. If anything in the group fails
 * (an error, a deadlock, a lost connection, a COMMIT that rolled back), nothing of it
 * was committed and each statement is sent again alone, with the usual retries.
 */
export interface GroupCommit {
  /** Runs `statement` (one query on the `q` it is given) in the next group; retried alone
   *  through a Postgres outage like any state write (`withDbRetry`). The statement must
   *  call `q.query` before its first `await`: a group is queued in one synchronous pass
   *  (BEGIN, the statements, COMMIT), so a query sent later would land after the COMMIT. */
  run<T>(statement: (q: Q) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

interface Item {
  statement: (q: Q) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

/** The client's socket, to cork while a group is queued on it (node-postgres keeps it on
 *  `connection.stream`; without it the group simply goes out in several writes). */
function socketOf(client: pg.PoolClient): { cork(): void; uncork(): void } | undefined {
  const stream = (client as unknown as { connection?: { stream?: { cork?: unknown; uncork?: unknown } } }).connection?.stream;
  return typeof stream?.cork === 'function' && typeof stream.uncork === 'function' ? (stream as { cork(): void; uncork(): void }) : undefined;
}

export function createGroupCommit(a: { db: Database; log: Logger; maxInFlight?: number; maxGroup?: number }): GroupCommit {
  const { db, log } = a;
  const maxInFlight = a.maxInFlight ?? 2;
  const maxGroup = a.maxGroup ?? 32;
  // Pipelined connections for groups (a pipelined client must not share the pool's
  // connections: it sends queries without waiting for the previous answer).
  const pipelined = new pg.Pool({ ...db.pool.options, max: maxInFlight, pipeline: true, allowExitOnIdle: true });
  pipelined.on('error', () => {});
  let queue: Item[] = [];
  let inFlight = 0;
  let scheduled = false;
  let closed = false;

  const alone = (it: Item) => withDbRetry(() => it.statement(db.pool)).then(it.resolve, it.reject);

  function schedule() {
    if (scheduled || queue.length === 0 || inFlight >= maxInFlight) return;
    scheduled = true;
    // One event-loop turn: whatever is asked for in it goes together.
    setImmediate(flush);
  }

  function flush() {
    scheduled = false;
    while (queue.length > 0 && inFlight < maxInFlight) {
      const group = queue.slice(0, maxGroup);
      queue = queue.slice(group.length);
      inFlight++;
      const done = group.length === 1 || closed ? Promise.all(group.map(alone)) : together(group);
      void done.finally(() => {
        inFlight--;
        schedule();
      });
    }
  }

  async function together(group: Item[]): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await pipelined.connect();
    } catch {
      await Promise.all(group.map(alone));
      return;
    }
    try {
      // All queued on the client before the first answer: one transaction, one round trip,
      // and one socket write (the corked stream sends the group's messages together).
      const stream = socketOf(client);
      stream?.cork();
      let begin: Promise<unknown>, results: Promise<unknown>[], commit: Promise<pg.QueryResult>;
      try {
        begin = client.query('begin');
        results = group.map((it) => it.statement(client));
        commit = client.query('commit');
      } finally {
        stream?.uncork();
      }
      const settled = await Promise.allSettled([begin, ...results, commit]);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      // A statement that failed aborts the transaction: its COMMIT answers ROLLBACK.
      if (!failed && (settled.at(-1) as PromiseFulfilledResult<pg.QueryResult>).value.command === 'COMMIT') {
        client.release();
        group.forEach((it, i) => it.resolve((settled[i + 1] as PromiseFulfilledResult<unknown>).value));
        return;
      }
      throw failed?.reason ?? new Error('group commit rolled back');
    } catch (err) {
      // Nothing was committed (the connection is dropped, so no transaction can linger):
      // each statement again, alone, with the usual retries.
      client.release(err instanceof Error ? err : new Error(String(err)));
      log.debug({ n: group.length, err: String(err) }, 'group commit failed; sending its statements alone');
      await Promise.all(group.map(alone));
    }
  }

  return {
    run<T>(statement: (q: Q) => Promise<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ statement, resolve: resolve as (v: unknown) => void, reject });
        schedule();
      });
    },
    async close() {
      closed = true;
      await pipelined.end();
    },
  };
}
