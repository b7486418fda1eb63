import type { ByteSink } from './byte-sink';
import { columnType, type ColumnSpec, type ColumnType } from './columns';

/**
 * The transform's fast path at the byte level: validates one NDJSON line (a flat JSON
 * object, UTF-8) against a column spec and writes its output line straight into a
 * buffer, with no JSON.parse, no row object and no string per value. It handles only the
 * plain case, where the output is the input's bytes rearranged: values already of their
 * column's type (or 64-bit integers as decimal strings), no escapes, no nested values in
 * listed columns, each column at most once. It answers "not sure" for anything else, and
 * the caller sends that row through the zod schema (columns.ts), which stays the rule.
 * rows.test.ts checks on generated rows that both give the same bytes.
 *
 * Performance (this is the transform's inner loop): the per-line state lives in typed
 * arrays captured as consts (not parameters) by closures made once per encoder, which V8
 * compiles as constants; the same code as a class (state in fields) ran 15-30% slower.
 * The helpers it calls stay in this module: imported ones were not inlined (~5% slower).
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const TAB = 0x09;
const NULL = [0x6e, 0x75, 0x6c, 0x6c];
const ZERO = 0x30;
const NINE = 0x39;

const isDigit = (c: number) => c >= ZERO && c <= NINE;

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
  for (let k = i; k < e; k++) if (!isDigit(b[k])) return false;
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
  while (i < e && isDigit(b[i])) i++;
  const intDigits = i - intStart;
  if (intDigits < 1 || (b[intStart] === ZERO && intDigits > 1)) return false;
  if (i === e) return intDigits <= 15 && !(b[s] === MINUS && intDigits === 1 && b[intStart] === ZERO);
  if (b[i] !== DOT) return false;
  const fracStart = ++i;
  while (i < e && isDigit(b[i])) i++;
  const fracDigits = i - fracStart;
  if (i !== e || fracDigits < 1 || b[e - 1] === ZERO || intDigits + fracDigits > 15) return false;
  if (intDigits === 1 && b[intStart] === ZERO) {
    let zeros = 0;
    while (b[fracStart + zeros] === ZERO) zeros++;
    if (zeros > 5) return false;
  }
  return true;
}

const enum Tok { None, Str, Num, True, False, Null }
const enum Kind { String, Number, Integer, Boolean, Slow }

const KIND: Record<ColumnType, Kind> = {
  string: Kind.String, number: Kind.Number, integer: Kind.Integer, boolean: Kind.Boolean, timestamp: Kind.Slow, json: Kind.Slow,
};

interface Column {
  name: Buffer;
  /** `{"name":` for the first column, `,"name":` for the others. */
  prefix: Buffer;
  kind: Kind;
  optional: boolean;
}

/** Per line: where each listed column's value is (bytes [vs, ve); a string without its
 *  quotes), and what kind of token it is (Tok.None: absent). */
interface Slots { tok: Uint8Array; vs: Int32Array; ve: Int32Array } // tok holds Tok values: read them `as Tok`

export interface ByteEncoder {
  /**
   * Encodes line [s, e) of `src` into `out` (keyed: `"key"\t{...}`) and returns true; or
   * returns false, having written nothing, when the line needs the zod path.
   */
  line(src: Uint8Array, s: number, e: number, out: ByteSink): boolean;
}

export function compileByteEncoder(columns: ColumnSpec, keyField?: string): ByteEncoder {
  const cols: Column[] = Object.entries(columns).map(([name, type], i) => ({
    name: Buffer.from(name, 'utf8'),
    prefix: Buffer.from(`${i ? ',' : '{'}${JSON.stringify(name)}:`, 'utf8'),
    kind: KIND[columnType(type)],
    optional: type.endsWith('?'),
  }));
  const keyIndex = keyField ? cols.findIndex((c) => c.name.toString('utf8') === keyField) : -1;
  const n = cols.length;
  const slots: Slots = { tok: new Uint8Array(n), vs: new Int32Array(n), ve: new Int32Array(n) };
  const scan = compileScanner(cols.map((c) => c.name), slots);
  const write = compileWriter(cols, keyIndex, slots);
  return {
    line(b, s, e, out) {
      return scan(b, s, e) && write(b, s, e, out);
    },
  };
}

const isWs = (c: number) => c === 0x20 || c === TAB || c === 0x0d || c === 0x0a;

/** Whether only whitespace follows i. */
function end(b: Uint8Array, i: number, e: number): boolean {
  while (i < e && isWs(b[i])) i++;
  return i === e;
}

/** The index of the quote closing a string whose first character is at i; -1 when the
 *  string holds an escape or a control character, or is not closed before e. */
function stringEnd(b: Uint8Array, i: number, e: number): number {
  while (i < e && b[i] !== QUOTE) {
    if (b[i] === BACKSLASH || b[i] < 0x20) return -1;
    i++;
  }
  return i < e ? i : -1;
}

/** true, false or null starting at b[i]; Tok.None for anything else. */
function literalAt(b: Uint8Array, i: number, c: number): Tok {
  if (c === 0x74 && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) return Tok.True;
  if (c === 0x66 && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 && b[i + 4] === 0x65) return Tok.False;
  if (c === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) return Tok.Null;
  return Tok.None;
}

/** Whether bytes [s, s + len) of b are `name`. */
function sameBytes(name: Buffer, b: Uint8Array, s: number, len: number): boolean {
  if (name.length !== len) return false;
  for (let k = 0; k < len; k++) if (name[k] !== b[s + k]) return false;
  return true;
}

/** Scans one line into `slots`; false when it is not a flat object of plain values. */
function compileScanner(columnNames: Buffer[], slots: Slots): (b: Uint8Array, s: number, e: number) => boolean {
  const names = columnNames; // consts, not parameters: see the header
  const { tok, vs, ve } = slots;
  const n = names.length;
  /** The listed column named by bytes [s, e), or -1. Rows usually list their keys in the
   *  same order, so the column after the previous key is tried first. */
  let guess = 0;
  function find(b: Uint8Array, s: number, e: number): number {
    const len = e - s;
    if (guess < n && sameBytes(names[guess], b, s, len)) return guess++;
    for (let c = 0; c < n; c++) {
      if (sameBytes(names[c], b, s, len)) {
        guess = c + 1;
        return c;
      }
    }
    return -1;
  }
  return function scan(b, s, e) {
    tok.fill(Tok.None);
    guess = 0;
    let i = s;
    while (i < e && isWs(b[i])) i++;
    if (b[i] !== OPEN) return false;
    i++;
    while (i < e && isWs(b[i])) i++;
    if (b[i] === CLOSE) return end(b, i + 1, e);
    for (;;) {
      if (i >= e || b[i] !== QUOTE) return false;
      const ke = stringEnd(b, i + 1, e);
      if (ke < 0) return false;
      const col = find(b, i + 1, ke);
      i = ke + 1;
      while (i < e && isWs(b[i])) i++;
      if (b[i] !== COLON) return false;
      i++;
      while (i < e && isWs(b[i])) i++;
      if (i >= e) return false;
      const c = b[i];
      let t: Tok;
      let a = i;
      let z: number;
      if (c === QUOTE) {
        a = i + 1;
        z = stringEnd(b, a, e);
        if (z < 0) return false;
        i = z + 1;
        t = Tok.Str;
      } else if (c === MINUS || isDigit(c)) {
        while (i < e && (isDigit(b[i]) || b[i] === DOT || b[i] === MINUS || b[i] === 0x2b || b[i] === 0x65 || b[i] === 0x45)) i++;
        z = i;
        if (!plainDecimal(b, a, z)) return false;
        t = Tok.Num;
      } else {
        t = literalAt(b, i, c);
        if (t === Tok.None) return false; // a nested value, or not JSON
        z = i += t === Tok.False ? 5 : 4;
      }
      if (col >= 0) {
        if ((tok[col] as Tok) !== Tok.None) return false; // a repeated key: JSON.parse keeps the last one
        tok[col] = t;
        vs[col] = a;
        ve[col] = z;
      }
      while (i < e && isWs(b[i])) i++;
      if (b[i] === COMMA) {
        i++;
        while (i < e && isWs(b[i])) i++;
        continue;
      }
      if (b[i] === CLOSE) return end(b, i + 1, e);
      return false;
    }
  };
}

/** Writes the output line of a scanned line, or returns false (writing nothing) when a
 *  column's token is not one the fast path can write for its type. */
function compileWriter(columns: Column[], key: number, slots: Slots):
  (b: Uint8Array, s: number, e: number, out: ByteSink) => boolean {
  const cols = columns; // consts, not parameters: see the header
  const keyIndex = key;
  const { tok, vs, ve } = slots;
  const n = cols.length;
  const prefixBytes = cols.reduce((t, c) => t + c.prefix.length, 0);
  function plain(b: Uint8Array, c: number): boolean {
    const col = cols[c];
    const t = tok[c] as Tok;
    if (t === Tok.None || t === Tok.Null) return col.optional;
    switch (col.kind) {
      case Kind.String: return t === Tok.Str;
      case Kind.Number: return t === Tok.Num;
      case Kind.Integer: return (t === Tok.Num || t === Tok.Str) && plainInteger(b, vs[c], ve[c]);
      case Kind.Boolean: return t === Tok.True || t === Tok.False;
      default: return false;
    }
  }
  /** Writes column c's value at o[p] (a string without its quotes); returns the new p. */
  function put(b: Uint8Array, c: number, o: Buffer, p: number): number {
    const t = tok[c] as Tok;
    if (t === Tok.None || t === Tok.Null) {
      for (let k = 0; k < 4; k++) o[p++] = NULL[k]!;
      return p;
    }
    const a = vs[c];
    const z = ve[c];
    if (z - a > 32) {
      o.set(b.subarray(a, z), p);
      return p + z - a;
    }
    for (let k = a; k < z; k++) o[p++] = b[k]!;
    return p;
  }
  return function write(b, s, e, out) {
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
      const col = cols[c];
      const pre = col.prefix;
      for (let k = 0; k < pre.length; k++) o[p++] = pre[k]!;
      if (col.kind === Kind.String && (tok[c] as Tok) === Tok.Str) {
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
  };
}
