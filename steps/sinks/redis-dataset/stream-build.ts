import type { Redis } from 'ioredis';
import { NonRetryableError, StepAbortedError } from '../../../lib/errors';
import { RoundSender } from './builder';
import { datasetKey, TMP_TTL_MS } from './keys';
import type { DatasetShape } from './publish';
import { BUILD_FINISH, BUILD_OPEN, LOAD_AT_SCRIPT } from './scripts';
import type { BuiltDataset } from './write';

const HASH_PIECE_BYTES = 128 * 1024;
const JSON_PIECE_BYTES = 512 * 1024;
const PIECES_PER_ROUND = 4;

/**
 * A dataset built from staged chunks as they arrive, continuable across attempts (the
 * overlapped `write`, workflows/engine/ARCHITECTURE.md "Overlapped steps"). Each chunk
 * is cut into pieces at line ends (128 KB for a hash, 512 KB for JSON; a pure function
 * of the chunk), and each piece is loaded by LOAD_AT, which checks and advances the
 * build's position atomically: a piece is loaded exactly once, across attempts. The
 * position and counts live in the state hash beside the build key; Redis losing one
 * loses both, and the build starts over.
 */
export interface StreamBuild {
  /** Where loading continues: the chunk, and the piece in it. */
  readonly at: { chunk: number; piece: number };
  addChunk(seq: number, chunk: Buffer): Promise<void>;
  finish(): Promise<BuiltDataset>;
  /** Deletes the build and its state (an abandoned epoch, or after the publish). */
  drop(): Promise<void>;
  /** Waits for the loads in flight, whatever their outcome. */
  settle(): Promise<void>;
}

/** Every build key and state hash a run's streaming builds opened (for cleanup). */
const buildsKey = (runId: string) => `etl:builds:${runId}`;

/** Deletes every build of the run still in Redis (after its publish renamed the ones it
 *  used): the builds of abandoned epochs and their states. */
export async function dropRunBuilds(redis: Redis, runId: string): Promise<void> {
  const keys = await redis.smembers(buildsKey(runId));
  await redis.unlink(...keys, buildsKey(runId));
}

export async function streamBuild(redis: Redis, a: { runId: string; dataset: string; shape: DatasetShape; tmp: string; state: string; attempt: number }): Promise<StreamBuild> {
  const b = new Builder(redis, a);
  await b.open();
  return b;
}

class Builder extends RoundSender implements StreamBuild {
  at = { chunk: 0, piece: 0 };
  private sha: string | undefined;

  constructor(redis: Redis, private a: { runId: string; dataset: string; shape: DatasetShape; tmp: string; state: string; attempt: number }) {
    super(redis);
  }

  private keys() {
    return [this.a.tmp, this.a.state];
  }

  async open(): Promise<void> {
    const r = await this.call(BUILD_OPEN, [String(this.a.attempt), String(TMP_TTL_MS)], [buildsKey(this.a.runId)]) as [string, number, number, number, number];
    const [chunk, piece] = r[0].split(':').map(Number);
    this.at = { chunk, piece };
    this.sha = await this.redis.script('LOAD', LOAD_AT_SCRIPT) as string;
  }

  /** EVALSHA of a script (loaded once per build; SCRIPT LOAD is idempotent). */
  private async call(script: string, args: string[], extraKeys: string[] = []): Promise<unknown> {
    try {
      const sha = await this.redis.script('LOAD', script) as string;
      return await this.redis.evalsha(sha, 2 + extraKeys.length, ...this.keys(), ...extraKeys, ...args);
    } catch (err) {
      throw mapError(err);
    }
  }

  /** Loads chunk `seq` from the piece the build is at (all of it, for a later chunk). */
  async addChunk(seq: number, chunk: Buffer): Promise<void> {
    if (seq < this.at.chunk) return; // loaded before
    const json = this.a.shape === 'json';
    const pieces = cut(chunk, json ? JSON_PIECE_BYTES : HASH_PIECE_BYTES, json); // a hash counts its lines in Redis
    const from = seq === this.at.chunk ? this.at.piece : 0;
    let round: string[][] = [];
    for (let i = from; i < pieces.length; i++) {
      const next = i + 1 < pieces.length ? `${seq}:${i + 1}` : `${seq + 1}:0`;
      const p = pieces[i];
      const piece = this.a.shape === 'hash' ? p.data : jsonElements(p.data);
      round.push([String(this.a.attempt), String(TMP_TTL_MS), `${seq}:${i}`, next, this.a.shape, piece as unknown as string, String(p.lines)]);
      if (round.length >= PIECES_PER_ROUND) {
        await this.sendRound(round);
        round = [];
      }
    }
    // An empty chunk (every row of it rejected) still moves the position on.
    if (pieces.length === 0) round.push([String(this.a.attempt), String(TMP_TTL_MS), `${seq}:0`, `${seq + 1}:0`, this.a.shape, '', '0']);
    if (round.length) await this.sendRound(round);
    this.at = { chunk: seq + 1, piece: 0 };
  }

  private async sendRound(round: string[][]): Promise<void> {
    const sha = this.sha!;
    await this.send(
      (p) => {
        for (const args of round) p.evalsha(sha, 2, ...this.keys(), ...args);
      },
      () => {},
      (err) => mapError(err),
      2,
    );
  }

  async finish(): Promise<BuiltDataset> {
    await this.drain();
    const [size, bytes, sent] = await this.call(BUILD_FINISH, [String(this.a.attempt), String(TMP_TTL_MS), this.a.shape]) as [number, number, number];
    const rows = this.a.shape === 'hash' ? size : sent;
    return {
      dataset: this.a.dataset, key: datasetKey(this.a.dataset), shape: this.a.shape, tmp: this.a.tmp, size, rows, bytes,
      duplicates: this.a.shape === 'hash' ? sent - size : 0, lastRows: null,
    };
  }

  async drop(): Promise<void> {
    await this.settle();
    await this.redis.unlink(this.a.tmp, this.a.state);
  }
}

function mapError(err: unknown): unknown {
  const msg = String((err as Error).message);
  if (msg.includes('etl-owner')) return new StepAbortedError(msg.replace(/^ERR /, ''), 'cancelled');
  const m = /etl-load: line (\d+) (.*)/.exec(msg);
  if (m) return new NonRetryableError(`a staged row ${m[2]}: cannot be a hash field`);
  return err;
}

/** The chunk's pieces: whole lines, each at most `max` bytes unless one line is longer
 *  (and, with `countLines`, how many lines each holds). */
function cut(chunk: Buffer, max: number, countLines: boolean): { data: Buffer; lines: number }[] {
  const out: { data: Buffer; lines: number }[] = [];
  for (let s = 0; s < chunk.length;) {
    let e = s + max >= chunk.length ? chunk.length : chunk.lastIndexOf(0x0a, s + max) + 1;
    if (e <= s) e = chunk.indexOf(0x0a, s) + 1 || chunk.length;
    const data = chunk.subarray(s, e);
    let lines = 0;
    if (countLines) {
      for (let i = data.indexOf(0x0a); i >= 0; i = data.indexOf(0x0a, i + 1)) lines++;
      if (data.length && data[data.length - 1] !== 0x0a) lines++;
    }
    out.push({ data, lines });
    s = e;
  }
  return out;
}

/** NDJSON lines as the elements of a JSON array: newlines become commas, the last dropped. */
function jsonElements(data: Buffer): Buffer {
  const end = data.length && data[data.length - 1] === 0x0a ? data.length - 1 : data.length;
  const out = Buffer.from(data.subarray(0, end));
  for (let i = out.indexOf(0x0a); i >= 0; i = out.indexOf(0x0a, i + 1)) out[i] = 0x2c;
  return out;
}
