import type { Redis } from 'ioredis';
import { NonRetryableError } from '../../../lib/errors';
import { RoundSender, type DatasetBuilder } from './builder';
import { TMP_TTL_MS } from './keys';

const MAX_STRING_BYTES = 512 * 1024 * 1024;
const JSON_CHUNK_CHARS = 512 * 1024;

/** The 'json' shape: one JSON array string built by APPENDs, for small and medium
 *  datasets that readers always load whole (Redis caps a string at 512 MB). */
export class JsonBuilder extends RoundSender implements DatasetBuilder {
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
