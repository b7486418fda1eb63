/**
 * Proves, as rows stream past, that no key repeats within a load, so the Postgres sink can
 * skip its DISTINCT ON sort of the whole stage (about a second per million rows on the
 * server) in the common case of a source with unique keys.
 *
 * A key is remembered as two 32-bit hashes (64 bits) in an open-addressing table: 8 bytes a
 * slot, 16 MB at a million keys. Only "no repeat" is ever trusted: equal keys always hash
 * equal, so a real repeat is always seen; a hash collision of two different keys merely
 * reads as a repeat, and the sink then dedupes in SQL as it would anyway. Past `maxKeys`
 * the set gives up (frees its memory) and the answer is "unknown", which the sink treats
 * like a repeat.
 *
 * Keys are compared as the exact text Postgres receives, which is equality in Postgres only
 * for text-like columns under a deterministic collation; callers use it only for those. A
 * key with a UTF-16 surrogate also gives up: a lone surrogate is sent as U+FFFD, so two
 * different JS strings could arrive as the same bytes.
 */
export class KeySet {
  private a: Uint32Array | null;
  private b: Uint32Array | null;
  private mask: number;
  private count = 0;
  /** False once a repeat (or a collision) was seen, or the set gave up. */
  private ok = true;

  constructor(private readonly maxKeys = 2_000_000, initialSlots = 1 << 14) {
    this.a = new Uint32Array(initialSlots);
    this.b = new Uint32Array(initialSlots);
    this.mask = initialSlots - 1;
  }

  /** True when every key added so far was new. */
  get unique(): boolean {
    return this.ok;
  }

  add(key: string): void {
    if (!this.ok) return;
    let h1 = 0x811c9dc5;
    let h2 = 0x9747b28c;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdfff) return this.giveUp();
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    h1 ^= h1 >>> 16;
    h1 = Math.imul(h1, 0x85ebca6b) >>> 0;
    h2 = (Math.imul(h2 ^ key.length, 0xc2b2ae35) ^ (h2 >>> 13)) >>> 0;
    if (h1 === 0 && h2 === 0) h2 = 1; // (0, 0) marks an empty slot
    if (!this.insert(h1, h2)) return this.giveUp();
    if (++this.count > this.maxKeys) return this.giveUp();
    if (this.count * 2 > this.mask + 1) this.grow();
  }

  /** False when the pair is already present. */
  private insert(h1: number, h2: number): boolean {
    const a = this.a!;
    const b = this.b!;
    let i = h1 & this.mask;
    while (a[i] !== 0 || b[i] !== 0) {
      if (a[i] === h1 && b[i] === h2) return false;
      i = (i + 1) & this.mask;
    }
    a[i] = h1;
    b[i] = h2;
    return true;
  }

  private grow(): void {
    const oldA = this.a!;
    const oldB = this.b!;
    const slots = (this.mask + 1) * 2;
    this.a = new Uint32Array(slots);
    this.b = new Uint32Array(slots);
    this.mask = slots - 1;
    for (let i = 0; i < oldA.length; i++) if (oldA[i] !== 0 || oldB[i] !== 0) this.insert(oldA[i], oldB[i]);
  }

  private giveUp(): void {
    this.ok = false;
    this.a = null;
    this.b = null;
  }
}
