import { describe, expect, it } from 'vitest';
import { NonRetryableError } from '../../lib/errors';
import { ByteSink } from './byte-sink';
import { columnSpecSchema } from './columns';
import { compileByteEncoder } from './row-bytes';
import { rowEncoder } from './rows';

const columns = {
  id: 'integer', name: 'string', amount: 'number', active: 'boolean', at: 'timestamp?', extra: 'json?', note: 'string?', n: 'integer?',
};

/** Values of every kind a JSON source can send, good and bad for each column type. */
const samples: unknown[] = [
  0, -0, 1, -17, 3.5, 0.01, -0.5, 123.45, 0.000001, 0.0000012, 1e-7, 0.1 + 0.2, 1234567890.12345, 1e21, 2 ** 53 - 1, 2 ** 53 + 2, '0', '-0', '42', '007', '-12', '1.5', '1e3', '123456789012345', '1234567890123456',
  '99999999999999999999', '', ' 1', 'abc', 'ü"\\\n\t\u2028', 'Cancún 東京 😀', 'a\u007fb', true, false, 'true', 'false', null, undefined,
  [], [1, 'a'], {}, { a: 1 }, '2026-11-26T10:00:00Z', '1700000000', 'not a date',
];

function* rows(): Generator<unknown> {
  let i = 0;
  const pick = () => samples[(i++ * 7919) % samples.length];
  for (let n = 0; n < 4_000; n++) {
    const row: Record<string, unknown> = {};
    for (const c of Object.keys(columns)) {
      const v = pick();
      if (v !== undefined || n % 3) row[c] = v;
    }
    if (n % 5 === 0) row.unlisted = 'dropped';
    yield row;
  }
  // Rows that are valid in the usual way (the fast path's case), and non-objects.
  for (let n = 0; n < 200; n++) {
    yield { id: String(n), name: `c-${n}`, amount: n / 8, active: n % 2 === 0, at: n % 3 ? null : '2026-11-26T10:00:00Z', extra: n % 2 ? null : { k: [n] }, note: null, n };
  }
  yield* [null, 1, 'row', [1, 2], { id: 1 }];
}

describe('rowEncoder', () => {
  it('encodes every row exactly as the zod schema does, and accepts only what zod accepts', () => {
    for (const keyField of [undefined, 'id']) {
      const enc = rowEncoder(columns, keyField);
      let fastOk = 0;
      for (const row of rows()) {
        const slow = enc.encodeSlow(row);
        const got = enc.encode(row);
        if (typeof slow === 'string') {
          expect(got, JSON.stringify(row)).toBe(slow);
          fastOk++;
        } else {
          expect(typeof got, JSON.stringify(row)).toBe('object');
        }
      }
      expect(fastOk).toBeGreaterThanOrEqual(200);
    }
  });

  it('agrees with zod on every sample value for every column type, required and optional', () => {
    let agreed = 0;
    for (const type of ['string', 'number', 'integer', 'boolean', 'timestamp', 'json']) {
      for (const t of [type, `${type}?`]) {
        const enc = rowEncoder({ k: 'string', v: t }, 'v');
        for (const v of samples) {
          const row = v === undefined ? { k: 'x' } : { k: 'x', v };
          const slow = enc.encodeSlow(row);
          const got = enc.encode(row);
          if (typeof slow === 'string') expect(got, `${t} ${JSON.stringify(v)}`).toBe(slow);
          else expect(typeof got, `${t} ${JSON.stringify(v)}`).toBe('object');
          agreed++;
        }
      }
    }
    expect(agreed).toBe(12 * samples.length);
  });

  it('gives the same bytes from NDJSON through the byte-level fast path as through zod, in every JSON spelling', () => {
    const spellings = (row: unknown): string[] => {
      const compact = JSON.stringify(row);
      if (typeof row !== 'object' || row === null || Array.isArray(row)) return [compact];
      const entries = Object.entries(row);
      return [
        compact,
        JSON.stringify(row, null, 1).replace(/\n/g, ' '), // spaces and tabs around tokens
        `\t${JSON.stringify(row, null, '\t').replace(/\n/g, '')} `,
        JSON.stringify(Object.fromEntries(entries.reverse())), // another key order
        compact.replace(/^\{/, '{"zz":{"nested":[1,"x"]},'), // an unlisted nested value
        compact.replace(/^\{/, '{"zz":1e5,"yy":"\\u00e9",'), // unlisted values the fast path does not read
        compact.replace(/"([a-z]+)":/, '"\\u0069d":'), // an escaped key
        entries.length ? compact.replace(/\}$/, `,${JSON.stringify(entries[0][0])}:null}`) : compact, // a repeated key
        compact.replace(/:(-?\d+)([,}])/, ':$1.0$2'), // 1 → 1.0
      ];
    };
    const plainColumns = { id: 'integer', name: 'string', amount: 'number', active: 'boolean', note: 'string?', n: 'integer?' };
    for (const [spec, keyField] of [[columns, undefined], [columns, 'id'], [plainColumns, 'id'], [plainColumns, 'name']] as const) {
      const enc = rowEncoder(spec, keyField);
      const bytes = compileByteEncoder(spec, keyField);
      let viaBytes = 0;
      for (const row of rows()) {
        for (const text of spellings(row)) {
          let expected: string | null;
          try {
            const slow = enc.encodeSlow(JSON.parse(text));
            expected = typeof slow === 'string' ? `${slow}\n` : null;
          } catch {
            expected = null; // not JSON at all
          }
          const input = Buffer.from(`${text}\n`);
          const sink = new ByteSink(16);
          if (bytes.line(input, 0, input.length - 1, sink)) {
            viaBytes++;
            expect(`${sink.take().toString('utf8')}\n`, text).toBe(expected);
          }
          let got: string | null;
          try {
            const r = enc.encodeChunk(input, { offset: 0, skipBad: true, what: 'x' });
            got = r.bad ? null : r.data.toString('utf8');
          } catch {
            got = null;
          }
          expect(got, text).toBe(expected);
        }
      }
      // The fast path really was exercised, not just the fallback.
      expect(viaBytes).toBeGreaterThan(spec === plainColumns ? 300 : 50);
    }
  });

  it('encodes a long chunk for a wide spec whose optional columns the rows leave out', () => {
    const wide = Object.fromEntries([['id', 'integer'], ...Array.from({ length: 12 }, (_, i) => [`c${i}`, 'string?'])]);
    for (const keyField of [undefined, 'id']) {
      const enc = rowEncoder(wide, keyField);
      const lines = Array.from({ length: 1_000 }, (_, i) => (i % 3 ? `{"id":${i}}` : `{"id":${i},"c5":"${'x'.repeat(i % 50)}"}`));
      const r = enc.encodeChunk(Buffer.from(`${lines.join('\n')}\n`), { offset: 0, skipBad: false, what: 'x' });
      expect(r.rows).toBe(1_000);
      const slow = (l: string) => {
        const line = enc.encodeSlow(JSON.parse(l));
        if (typeof line !== 'string') throw new Error(`the zod path refused ${l}: ${line.message}`);
        return line;
      };
      expect(r.data.toString('utf8')).toBe(lines.map((l) => `${slow(l)}\n`).join(''));
    }
  });

  it('encodes a chunk of many lines, counting them, with bad rows named by their line', () => {
    const enc = rowEncoder({ id: 'integer', city: 'string', amount: 'number' }, 'id');
    const chunk = Buffer.from('{"id":"1","city":"Kyiv","amount":0.5}\n{"id":2,"city":"Cancún","amount":3}\n{"id":"x","city":"Rome","amount":1}\n{"city":"Oslo","amount":1,"id":4}\n');
    expect(() => enc.encodeChunk(chunk, { offset: 10, skipBad: false, what: 'dests' })).toThrow(/^malformed dests row 12 \(id=x\): field "id"/);
    const r = enc.encodeChunk(chunk, { offset: 10, skipBad: true, what: 'dests' });
    expect(r).toMatchObject({ rows: 4, bad: 1 });
    expect(r.data.toString('utf8')).toBe('"1"\t{"id":1,"city":"Kyiv","amount":0.5}\n"2"\t{"id":2,"city":"Cancún","amount":3}\n"4"\t{"id":4,"city":"Oslo","amount":1}\n');
  });

  it('refuses column names that a parsed row would inherit from Object.prototype', () => {
    for (const name of ['constructor', 'toString', 'valueOf', 'hasOwnProperty']) {
      expect(columnSpecSchema.safeParse({ id: 'integer', [name]: 'json?' }).success, name).toBe(false);
    }
    // zod drops a "__proto__" key from a record altogether.
    expect(columnSpecSchema.parse(JSON.parse('{"id":"integer","__proto__":"json?"}'))).toEqual({ id: 'integer' });
    expect(columnSpecSchema.safeParse({ id: 'integer', constructor_id: 'string' }).success).toBe(true);
  });

  it('coerces 64-bit integers sent as strings and keeps only the listed columns', () => {
    const enc = rowEncoder({ id: 'integer', city: 'string', amount: 'number' }, 'id');
    expect(enc.encode({ id: '0042', city: 'Kyiv', amount: 1.5, secret: 'x' })).toBe('"42"\t{"id":42,"city":"Kyiv","amount":1.5}');
  });

  it('names the row, its key and the field of a malformed row, never its content; or skips and counts it', () => {
    const enc = rowEncoder({ id: 'integer', email: 'string' }, 'id');
    const chunk = Buffer.from('{"id":"1","email":"a@x"}\n{"id":"2","email":{"private":"p@x"}}\n{"id":"3","email":"c@x"}\n');
    let err: unknown;
    try {
      enc.encodeChunk(chunk, { offset: 100, skipBad: false, what: 'contacts' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as Error).message).toMatch(/^malformed contacts row 101 \(id=2\): field "email": /);
    expect((err as Error).message).not.toContain('p@x');
    const skipped = enc.encodeChunk(chunk, { offset: 0, skipBad: true, what: 'contacts' });
    expect(skipped.data.toString('utf8')).toBe('"1"\t{"id":1,"email":"a@x"}\n"3"\t{"id":3,"email":"c@x"}\n');
    expect(skipped).toMatchObject({ rows: 3, bad: 1, firstBad: expect.stringContaining('row 1 (id=2): field "email"') });
  });
});
