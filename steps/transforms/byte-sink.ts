/** A growable output buffer: the byte-level encoders write straight into `buf` at `pos`
 *  after a `reserve`. */
export class ByteSink {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  byte(b: number): void {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }
  /** A string as UTF-8. */
  utf8(s: string): void {
    this.reserve(Buffer.byteLength(s));
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
  /** The bytes written so far, without a copy: for a sink used once (it is not reset). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
  /** The bytes written so far (a copy), and a reset. */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}
