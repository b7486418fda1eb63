import { describe, expect, it } from 'vitest';
import { KeySet } from './key-set';

describe('KeySet', () => {
  it('stays unique over a million distinct keys (growing as it goes) and catches the first repeat', () => {
    const s = new KeySet(2_000_000, 16);
    for (let i = 0; i < 1_000_000; i++) s.add(`prj-${i}`);
    expect(s.unique).toBe(true);
    s.add('prj-999999x');
    expect(s.unique).toBe(true);
    s.add('prj-123456'); // seen long before, across many growths
    expect(s.unique).toBe(false);
  });

  it('tells apart keys that differ only in order, length or an empty part', () => {
    const s = new KeySet();
    for (const k of ['ab', 'ba', 'a', 'b', '', 'a\tb', 'ab\t', '\tab', 'a\\tb', 'Ab', 'ab ']) s.add(k);
    expect(s.unique).toBe(true);
    s.add('');
    expect(s.unique).toBe(false);
  });

  it('gives up (answers "not proven unique") past its cap or on a surrogate, and stays so', () => {
    const capped = new KeySet(1_000);
    for (let i = 0; i < 1_001; i++) capped.add(`k${i}`);
    expect(capped.unique).toBe(false);

    // A lone surrogate reaches Postgres as U+FFFD, so '\uD800' and '\uD801' would be the
    // same key there: no proof is attempted for such keys.
    const s = new KeySet();
    s.add('\uD800');
    expect(s.unique).toBe(false);
    s.add('plain');
    expect(s.unique).toBe(false);
  });
});
