import type { Redis } from 'ioredis';
import { z } from 'zod';
import { NonRetryableError } from '../../lib/errors';
import { checkRowCount, type DataCheckPolicy } from './data-check';

/**
 * Publishes a dataset at `cache:<dataset>` atomically (SPEC §5): rows are streamed into a
 * temporary key, checked, then swapped in by one server-side script, so a reader sees the
 * old full version or the new full version, never a mix. Until the swap, the published
 * dataset and its meta are not touched at all, so a failed or cancelled run leaves them
 * byte-for-byte as they were.
 *
 * Shapes: 'hash' (field = row[keyField], value = the row as JSON; one row readable without
 * loading the set) and 'json' (one JSON array string; for small and medium datasets that
 * readers always load whole; Redis caps a string at 512 MB).
 */

export type DatasetShape = 'hash' | 'json';

export interface WriteRedisDatasetArgs {
  redis: Redis;
  dataset: string;
  shape: DatasetShape;
  /** Rows as objects; or, to skip a parse/serialise round, staged `chunks` of UTF-8
   *  NDJSON (whole lines): keyed lines (`"<field>"\t<value>`) for 'hash', JSON values for
   *  'json'. */
  batches?: AsyncIterable<readonly Record<string, unknown>[]>;
  chunks?: AsyncIterable<Buffer>;
  /** Required for 'hash' rows: the row property that becomes the hash field. */
  keyField?: string;
  runId: string;
  /** The step attempt writing: each attempt builds under its own key, so a zombie attempt
   *  of the same run cannot add to (or delete) the build of the current one. */
  attempt?: number;
  pipelineId: string;
  check?: DataCheckPolicy;
  signal?: AbortSignal;
  /** Tuning. Defaults 1,000 fields per HSET × 8 HSETs per round trip: as fast as a
   *  hand-written multi-field HSET loop and ~2× one HSET per row (1M rows, measured). */
  fieldsPerCommand?: number;
  commandsPerRound?: number;
}

export interface WriteRedisDatasetResult {
  key: string;
  /** Rows published: hash fields (after de-duplication) or JSON array elements. */
  rows: number;
  /** Bytes of the published values (UTF-8), hash field names included. */
  bytes: number;
  /** Rows whose hash field repeated an earlier row's (the last one won). Always 0 for 'json'. */
  duplicates: number;
}

export const datasetMetaSchema = z.looseObject({
  runId: z.string(),
  pipelineId: z.string(),
  rows: z.number().int().nonnegative(),
  updatedAt: z.string(),
  shape: z.enum(['hash', 'json']).optional(),
  bytes: z.number().optional(),
});
export type DatasetMeta = z.infer<typeof datasetMetaSchema>;

/** An abandoned build (worker killed mid-write) expires on its own after this long; every
 *  write round refreshes it, so a slow but live build never loses its key. */
export const TMP_TTL_MS = 60 * 60_000;
const MAX_STRING_BYTES = 512 * 1024 * 1024;
const JSON_CHUNK_CHARS = 512 * 1024;

const DATASET = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/;
const LOAD_PIECE_BYTES = 128 * 1024;
const LOAD_PIECES_PER_ROUND = 4;

/** Keyed lines (`"<field, JSON-encoded>"\t<value>\n`) into the hash KEYS[1]; returns
 *  {fields created, lines, bytes of fields and values}. A field is sent JSON-encoded, so
 *  it is decoded here only when it holds an escape. */
const HASH_LOAD = `
local data, key = ARGV[1], KEYS[1]
local len, pos = #data, 1
local created, lines, bytes, na = 0, 0, 0, 0
local args = {}
while pos <= len do
  local nl = string.find(data, '\\n', pos, true) or (len + 1)
  local tab = string.find(data, '\\t', pos, true)
  if not tab or tab > nl or tab - pos < 2 or string.byte(data, pos) ~= 34 or string.byte(data, tab - 1) ~= 34 then
    return redis.error_reply('ERR etl-load: line ' .. lines .. ' is not a keyed line')
  end
  local field = string.sub(data, pos + 1, tab - 2)
  if string.find(field, '\\\\', 1, true) then
    local ok, decoded = pcall(cjson.decode, string.sub(data, pos, tab - 1))
    if not ok or type(decoded) ~= 'string' then
      return redis.error_reply('ERR etl-load: line ' .. lines .. ' has a key that is not a JSON string of valid Unicode')
    end
    field = decoded
  end
  if field == '' then return redis.error_reply('ERR etl-load: line ' .. lines .. ' has an empty key') end
  local value = string.sub(data, tab + 1, nl - 1)
  args[na + 1] = field
  args[na + 2] = value
  na = na + 2
  bytes = bytes + #field + #value
  lines = lines + 1
  if na >= 1000 then
    created = created + redis.call('HSET', key, unpack(args, 1, na))
    na = 0
  end
  pos = nl + 1
end
if na > 0 then created = created + redis.call('HSET', key, unpack(args, 1, na)) end
redis.call('PEXPIRE', key, ARGV[2])
return {created, lines, bytes}`;

export const datasetKey = (dataset: string) => `cache:${dataset}`;
export const metaKey = (dataset: string) => `cache:${dataset}:meta`;
export const tmpKey = (dataset: string, runId: string) => `cache:${dataset}:tmp:${runId}`;

function validateDataset(dataset: string): void {
  // A dataset named like a sibling key would overwrite another dataset's meta or build key.
  if (!DATASET.test(dataset) || dataset.endsWith(':meta') || dataset.includes(':tmp:')) {
    throw new NonRetryableError(`invalid dataset name ${JSON.stringify(dataset)}`);
  }
}

/** The meta of the published dataset, or null when none (or unreadable: then the data
 *  check has no baseline, which is better than refusing every future run). */
export async function readDatasetMeta(redis: Redis, dataset: string): Promise<DatasetMeta | null> {
  const raw = await redis.get(metaKey(dataset));
  if (raw === null) return null;
  try {
    const parsed = datasetMetaSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** The swap. A script rather than MULTI because MULTI does not roll back: if the build key
 *  had vanished (expired, deleted by hand) RENAME would fail inside EXEC while the meta SET
 *  still ran. Here nothing changes unless the build key holds exactly what we wrote. The old
 *  version is UNLINKed first because RENAME would free it synchronously (~0.5 s of blocked
 *  Redis per million hash fields). An empty hash does not exist as a key, so publishing 0
 *  rows leaves the dataset deleted. */
const PUBLISH = `
local size
if ARGV[2] == 'hash' then size = redis.call('HLEN', KEYS[1]) else size = redis.call('STRLEN', KEYS[1]) end
if size ~= tonumber(ARGV[3]) then
  return redis.error_reply('ERR build key ' .. KEYS[1] .. ' holds ' .. size .. ', expected ' .. ARGV[3] .. ' (expired or modified?)')
end
redis.call('UNLINK', KEYS[2])
if size > 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
redis.call('SET', KEYS[3], ARGV[1])
return size`;

export async function writeRedisDataset(a: WriteRedisDatasetArgs): Promise<WriteRedisDatasetResult> {
  validateDataset(a.dataset);
  if (a.shape === 'hash' && !a.keyField && a.batches) throw new NonRetryableError(`dataset ${a.dataset}: keyField is required for a hash`);
  if (!a.batches === !a.chunks) throw new Error('writeRedisDataset: give exactly one of batches and chunks');
  const key = datasetKey(a.dataset);
  const tmp = tmpKey(a.dataset, a.attempt === undefined ? a.runId : `${a.runId}.a${a.attempt}`);
  const writer = a.shape === 'hash' ? new HashBuilder(a.redis, tmp, a.keyField ?? '', a) : new JsonBuilder(a.redis, tmp);
  try {
    a.signal?.throwIfAborted();
    // UNLINK, not DEL, for anything that may be big: freeing a 1M-field hash in the main
    // thread stalls every Redis client for ~0.5 s (measured); UNLINK frees it in the background.
    await a.redis.unlink(tmp);
    if (a.chunks) {
      for await (const chunk of a.chunks) {
        a.signal?.throwIfAborted();
        await writer.addChunk(chunk);
      }
    } else {
      for await (const batch of a.batches!) {
        a.signal?.throwIfAborted();
        await writer.add(batch);
      }
    }
    await writer.finish();
    a.signal?.throwIfAborted();
    const { rows, bytes, duplicates, size } = writer;
    const last = await readDatasetMeta(a.redis, a.dataset);
    checkRowCount(rows, last?.rows ?? null, a.check);
    a.signal?.throwIfAborted();
    const meta: DatasetMeta = { runId: a.runId, pipelineId: a.pipelineId, rows, updatedAt: new Date().toISOString(), shape: a.shape, bytes };
    await a.redis.eval(PUBLISH, 3, tmp, key, metaKey(a.dataset), JSON.stringify(meta), a.shape, String(size));
    return { key, rows, bytes, duplicates };
  } catch (err) {
    // Writes still in flight must land before the delete, or one could recreate the key.
    await writer.settle();
    await a.redis.unlink(tmp).catch(() => {}); // else the TTL reclaims it
    throw err;
  }
}

/** Keeps at most one pipeline round in flight while the next one is being built, so the
 *  JSON encoding overlaps the network round trip and memory stays at two rounds. */
class RoundSender {
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

class HashBuilder extends RoundSender {
  rows = 0;
  bytes = 0;
  duplicates = 0;
  private sent = 0;
  private cmds: string[][] = [];
  private cur: string[] = [];
  private readonly fieldsPerCommand: number;
  private readonly commandsPerRound: number;

  constructor(redis: Redis, private tmp: string, private keyField: string, t: { fieldsPerCommand?: number; commandsPerRound?: number }) {
    super(redis);
    this.fieldsPerCommand = t.fieldsPerCommand ?? 1_000;
    this.commandsPerRound = t.commandsPerRound ?? 8;
  }

  get size() {
    return this.rows;
  }

  async add(batch: readonly Record<string, unknown>[]): Promise<void> {
    for (const row of batch) {
      const id = row[this.keyField];
      if (id === undefined || id === null || id === '') {
        throw new NonRetryableError(`row ${this.sent + 1} has no ${this.keyField}: cannot be a hash field`);
      }
      await this.push(String(id), JSON.stringify(row));
    }
  }

  /**
   * Keyed lines as bytes. Sent as they are, 128 KB to a call of a server-side script
   * that splits them and HSETs them (HASH_LOAD): the client builds no command argument
   * per row, which made the encoding, not Redis, the bottleneck (1M rows: 2.5 s with
   * HSET arguments, 1.8 s this way, measured from memory). Each call keeps Redis busy
   * for about 2 ms, about as long as one 1,000-field HSET.
   */
  async addChunk(chunk: Buffer): Promise<void> {
    if (this.cur.length || this.cmds.length) await this.flush();
    this.loadSha ??= await this.redis.script('LOAD', HASH_LOAD) as string;
    let round: Buffer[] = [];
    for (let s = 0; s < chunk.length;) {
      let e = s + LOAD_PIECE_BYTES >= chunk.length ? chunk.length : chunk.lastIndexOf(0x0a, s + LOAD_PIECE_BYTES) + 1;
      if (e <= s) e = chunk.indexOf(0x0a, s) + 1 || chunk.length; // one line longer than a piece
      round.push(chunk.subarray(s, e));
      s = e;
      if (round.length >= LOAD_PIECES_PER_ROUND) {
        await this.sendPieces(round);
        round = [];
      }
    }
    if (round.length) await this.sendPieces(round);
  }

  private loadSha: string | undefined;

  private async sendPieces(pieces: Buffer[]): Promise<void> {
    const sha = this.loadSha!;
    await this.send(
      (p) => {
        for (const piece of pieces) p.evalsha(sha, 1, this.tmp, piece, String(TMP_TTL_MS));
      },
      (replies) => {
        for (const r of replies as [number, number, number][]) {
          this.rows += r[0];
          this.sent += r[1];
          this.bytes += r[2];
        }
      },
      (err, before) => {
        // Rounds are answered in order: `sent` counts the lines of every earlier round,
        // `before` the pieces of this round ahead of the failing one.
        const m = /etl-load: line (\d+) (.*)/.exec(String((err as Error).message));
        if (!m) return err;
        const row = this.sent + (before as [number, number, number][]).reduce((t, r) => t + r[1], 0) + Number(m[1]) + 1;
        return new NonRetryableError(`row ${row} ${m[2]}: cannot be a hash field`);
      },
      // Two rounds queued: Redis starts the next as soon as it finishes one.
      2,
    );
  }

  private async push(field: string, value: string): Promise<void> {
    this.bytes += Buffer.byteLength(field) + Buffer.byteLength(value);
    this.cur.push(field, value);
    this.sent++;
    if (this.cur.length >= this.fieldsPerCommand * 2) {
      this.cmds.push(this.cur);
      this.cur = [];
      if (this.cmds.length >= this.commandsPerRound) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    if (this.cur.length) this.cmds.push(this.cur);
    const cmds = this.cmds;
    this.cmds = [];
    this.cur = [];
    if (cmds.length === 0) return;
    await this.send(
      (p) => {
        for (const c of cmds) p.hset(this.tmp, ...c);
        p.pexpire(this.tmp, TMP_TTL_MS);
      },
      // HSET answers with the number of fields it created; the rest overwrote a duplicate.
      (replies) => {
        for (let i = 0; i < cmds.length; i++) this.rows += replies[i] as number;
      },
    );
  }

  async finish(): Promise<void> {
    await this.flush();
    await this.drain();
    this.duplicates = this.sent - this.rows;
  }
}

class JsonBuilder extends RoundSender {
  rows = 0;
  bytes = 0;
  readonly duplicates = 0;
  private buf = '[';

  constructor(redis: Redis, private tmp: string) {
    super(redis);
  }

  get size() {
    return this.bytes;
  }

  async add(batch: readonly Record<string, unknown>[]): Promise<void> {
    for (const row of batch) {
      const json = JSON.stringify(row);
      if (json === undefined) throw new NonRetryableError(`row ${this.rows + 1} is not JSON-serialisable`);
      await this.push(json);
    }
  }

  async addChunk(chunk: Buffer): Promise<void> {
    const lines = chunk.toString('utf8').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    for (const json of lines) await this.push(json);
  }

  private async push(json: string): Promise<void> {
    this.buf += this.rows === 0 ? json : `,${json}`;
    this.rows++;
    if (this.buf.length >= JSON_CHUNK_CHARS) await this.flush();
  }

  private async flush(): Promise<void> {
    const chunk = this.buf;
    this.buf = '';
    if (!chunk) return;
    this.bytes += Buffer.byteLength(chunk);
    if (this.bytes > MAX_STRING_BYTES) {
      throw new NonRetryableError(`dataset exceeds Redis's 512 MB string limit at row ${this.rows}: use the 'hash' shape`);
    }
    await this.send(
      (p) => {
        p.append(this.tmp, chunk);
        p.pexpire(this.tmp, TMP_TTL_MS);
      },
      () => {},
    );
  }

  async finish(): Promise<void> {
    this.buf += ']';
    await this.flush();
    await this.drain();
  }
}
