import type { ColumnSpec, ColumnType } from './rows';

/**
 * The transform's fast path at the byte level: validates one NDJSON line (a flat JSON
 * object, UTF-8) against a column spec and writes its output line straight into a
 * buffer, with no JSON.parse, no row object and no string per value. It handles only the
 * plain case, where the output is the input's bytes rearranged: values already of their
 * column's type (or 64-bit integers as decimal strings), no escapes, no nested values in
 * listed columns, each column at most once. It answers "not sure" for anything else, and
 * the caller sends that row through the zod schema (rows.ts), which stays the rule.
 * rows.test.ts checks on generated rows that both give the same bytes.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const TAB = 0x09;

const enum Tok { None, Str, Num, True, False, Null }
const enum Kind { String, Number, Integer, Boolean, Slow }

const KIND: Record<ColumnType, Kind> = {
  string: Kind.String, number: Kind.Number, integer: Kind.Integer, boolean: Kind.Boolean, timestamp: Kind.Slow, json: Kind.Slow,
};

const isWs = (c: number) => c === 0x20 || c === TAB || c === 0x0d || c === 0x0a;
const isDigit = (c: number) => c >= ZERO && c <= NINE;

/** A growable output buffer. */
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
  /** The bytes written so far (a copy), and a reset. */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}

/**
 * An integer token the output keeps as it is: an optional minus, no leading zero, at most
 * 15 digits (always a safe integer, printed back the same way), and not "-0".
 */
function plainInteger(b: Uint8Array, s: number, e: number): boolean {
  let i = s;
  if (b[i] === MINUS) i++;
  const digits = e - i;
  if (digits < 1 || digits > 15) return false;
  if (b[i] === ZERO && (digits > 1 || i > s)) return false;
  for (let k = i; k < e; k++) if (!isDigit(b[k]!)) return false;
  return true;
}

/**
 * A decimal token that JavaScript prints back unchanged: an optional minus, a plain
 * integer part, a fraction without trailing zeros, at most 15 digits in all (so the
 * decimal is the shortest one that round-trips), and no more than 5 zeros after "0."
 * (below 1e-6 JavaScript switches to exponent notation). No exponent.
 */
function plainDecimal(b: Uint8Array, s: number, e: number): boolean {
  let i = s;
  if (b[i] === MINUS) i++;
  const intStart = i;
  while (i < e && isDigit(b[i]!)) i++;
  const intDigits = i - intStart;
  if (intDigits < 1 || (b[intStart] === ZERO && intDigits > 1)) return false;
  if (i === e) return intDigits <= 15 && !(b[s] === MINUS && intDigits === 1 && b[intStart] === ZERO);
  if (b[i] !== DOT) return false;
  const fracStart = ++i;
  while (i < e && isDigit(b[i]!)) i++;
  const fracDigits = i - fracStart;
  if (i !== e || fracDigits < 1 || b[e - 1] === ZERO || intDigits + fracDigits > 15) return false;
  if (intDigits === 1 && b[intStart] === ZERO) {
    let zeros = 0;
    while (b[fracStart + zeros] === ZERO) zeros++;
    if (zeros > 5) return false;
  }
  return true;
}

export interface ByteEncoder {
  /**
   * Encodes line [s, e) of `src` into `out` (keyed: `"key"\t{...}`) and returns true; or
   * returns false, having written nothing, when the line needs the zod path.
   */
  line(src: Uint8Array, s: number, e: number, out: ByteSink): boolean;
}

export function compileByteEncoder(columns: ColumnSpec, keyField?: string): ByteEncoder {
  const cols = Object.entries(columns).map(([name, type], i) => ({
    name: Buffer.from(name, 'utf8'),
    prefix: Buffer.from(`${i ? ',' : '{'}${JSON.stringify(name)}:`, 'utf8'),
    kind: KIND[type.replace('?', '') as ColumnType],
    optional: type.endsWith('?'),
  }));
  const n = cols.length;
  const keyIndex = keyField ? cols.findIndex((c) => c.name.toString('utf8') === keyField) : -1;
  // Per line: where each listed column's value is, and what kind of token it is.
  const tok = new Uint8Array(n);
  const vs = new Int32Array(n);
  const ve = new Int32Array(n);

  const names = cols.map((c) => c.name);
  function is(c: number, b: Uint8Array, s: number, len: number): boolean {
    const name = names[c]!;
    if (name.length !== len) return false;
    for (let k = 0; k < len; k++) if (name[k] !== b[s + k]) return false;
    return true;
  }
  /** The listed column named by bytes [s, e), or -1. Rows usually list their keys in the
   *  same order, so the column after the previous key is tried first. */
  let guess = 0;
  function find(b: Uint8Array, s: number, e: number): number {
    const len = e - s;
    if (guess < n && is(guess, b, s, len)) return guess++;
    for (let c = 0; c < n; c++) {
      if (is(c, b, s, len)) {
        guess = c + 1;
        return c;
      }
    }
    return -1;
  }

  /** Scans the object; false when it is not a flat object of plain values. */
  function scan(b: Uint8Array, s: number, e: number): boolean {
    tok.fill(Tok.None);
    guess = 0;
    let i = s;
    while (i < e && isWs(b[i]!)) i++;
    if (b[i] !== OPEN) return false;
    i++;
    while (i < e && isWs(b[i]!)) i++;
    if (b[i] === CLOSE) {
      i++;
    } else {
      for (;;) {
        if (i >= e || b[i] !== QUOTE) return false;
        const ks = ++i;
        while (i < e && b[i] !== QUOTE) {
          if (b[i] === BACKSLASH || b[i]! < 0x20) return false;
          i++;
        }
        if (i >= e) return false;
        const col = find(b, ks, i);
        i++;
        while (i < e && isWs(b[i]!)) i++;
        if (b[i] !== COLON) return false;
        i++;
        while (i < e && isWs(b[i]!)) i++;
        if (i >= e) return false;
        const c = b[i]!;
        let t: Tok;
        let a: number;
        let z: number;
        if (c === QUOTE) {
          a = ++i;
          while (i < e && b[i] !== QUOTE) {
            if (b[i] === BACKSLASH || b[i]! < 0x20) return false;
            i++;
          }
          if (i >= e) return false;
          z = i++;
          t = Tok.Str;
        } else if (c === MINUS || isDigit(c)) {
          a = i;
          while (i < e && (isDigit(b[i]!) || b[i] === DOT || b[i] === MINUS || b[i] === 0x2b || b[i] === 0x65 || b[i] === 0x45)) i++;
          z = i;
          t = Tok.Num;
        } else if (c === 0x74 && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) {
          a = i;
          z = i += 4;
          t = Tok.True;
        } else if (c === 0x66 && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 && b[i + 4] === 0x65) {
          a = i;
          z = i += 5;
          t = Tok.False;
        } else if (c === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) {
          a = i;
          z = i += 4;
          t = Tok.Null;
        } else {
          return false; // a nested value, or not JSON
        }
        if (t === Tok.Num && !plainDecimal(b, a, z)) return false;
        if (col >= 0) {
          if (tok[col] !== Tok.None) return false; // a repeated key: JSON.parse keeps the last one
          tok[col] = t;
          vs[col] = a;
          ve[col] = z;
        }
        while (i < e && isWs(b[i]!)) i++;
        if (b[i] === COMMA) {
          i++;
          while (i < e && isWs(b[i]!)) i++;
          continue;
        }
        if (b[i] === CLOSE) {
          i++;
          break;
        }
        return false;
      }
    }
    while (i < e && isWs(b[i]!)) i++;
    return i === e;
  }

  /** Whether column c's token is one the fast path can write for its type. */
  function plain(b: Uint8Array, c: number): boolean {
    const col = cols[c]!;
    const t = tok[c]!;
    if (t === Tok.None || t === Tok.Null) return col.optional;
    switch (col.kind) {
      case Kind.String: return t === Tok.Str;
      case Kind.Number: return t === Tok.Num;
      case Kind.Integer: return (t === Tok.Num || t === Tok.Str) && plainInteger(b, vs[c]!, ve[c]!);
      case Kind.Boolean: return t === Tok.True || t === Tok.False;
      default: return false;
    }
  }

  const prefixBytes = cols.reduce((t, c) => t + c.prefix.length, 0);
  const NULL = [0x6e, 0x75, 0x6c, 0x6c];

  /** Writes column c's value at o[p] (a string without its quotes); returns the new p. */
  function put(b: Uint8Array, c: number, o: Buffer, p: number): number {
    const t = tok[c]!;
    if (t === Tok.None || t === Tok.Null) {
      for (let k = 0; k < 4; k++) o[p++] = NULL[k]!;
      return p;
    }
    const a = vs[c]!;
    const z = ve[c]!;
    if (z - a > 32) {
      o.set(b.subarray(a, z), p);
      return p + z - a;
    }
    for (let k = a; k < z; k++) o[p++] = b[k]!;
    return p;
  }

  return {
    line(b, s, e, out) {
      if (!scan(b, s, e)) return false;
      for (let c = 0; c < n; c++) if (!plain(b, c)) return false;
      // Room for the whole output line: the key and the values are at most the input's
      // length each, plus the prefixes, and per column at most a "null" written for a
      // missing optional value and two quotes; then the key's quotes, tab and braces.
      out.reserve(2 * (e - s) + prefixBytes + 6 * n + 16);
      const o = out.buf;
      let p = out.pos;
      if (keyIndex >= 0) {
        // The hash field, JSON-encoded: the key's value as a string.
        o[p++] = QUOTE;
        p = put(b, keyIndex, o, p);
        o[p++] = QUOTE;
        o[p++] = TAB;
      }
      if (n === 0) o[p++] = OPEN;
      for (let c = 0; c < n; c++) {
        const col = cols[c]!;
        const pre = col.prefix;
        for (let k = 0; k < pre.length; k++) o[p++] = pre[k]!;
        if (col.kind === Kind.String && tok[c] === Tok.Str) {
          o[p++] = QUOTE;
          p = put(b, c, o, p);
          o[p++] = QUOTE;
        } else {
          p = put(b, c, o, p);
        }
      }
      o[p++] = CLOSE;
      out.pos = p;
      return true;
    },
  };
}
