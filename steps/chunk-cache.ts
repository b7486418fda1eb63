/**
 * The staged chunks this process committed most recently, kept in memory for the step
 * that streams from them in the same process (steps/stream.ts): it takes a chunk from
 * here instead of reading it back out of Postgres. Only committed chunks go in (after
 * their insert answered), under their (run, name, seq), and a chunk's content never
 * changes under that key (a rewrite writes the same bytes), so a hit is exactly what
 * Postgres would return; a miss reads Postgres. Bounded by bytes, oldest out first.
 */
const MAX_BYTES = 24 * 1024 * 1024;
const chunks = new Map<string, Buffer>();
let bytes = 0;

const keyOf = (runId: string, name: string, seq: number) => `${runId}\u0000${name}\u0000${seq}`;

export function rememberChunk(runId: string, name: string, seq: number, data: Buffer): void {
  if (data.length > MAX_BYTES / 4) return;
  const k = keyOf(runId, name, seq);
  const old = chunks.get(k);
  if (old) {
    bytes -= old.length;
    chunks.delete(k);
  }
  chunks.set(k, data);
  bytes += data.length;
  for (const [key, b] of chunks) {
    if (bytes <= MAX_BYTES) break;
    chunks.delete(key);
    bytes -= b.length;
  }
}

/** The chunk if this process committed it recently; it leaves the cache (one reader). */
export function takeChunk(runId: string, name: string, seq: number): Buffer | undefined {
  const k = keyOf(runId, name, seq);
  const b = chunks.get(k);
  if (b) {
    chunks.delete(k);
    bytes -= b.length;
  }
  return b;
}
