import { describe, expect, it } from 'vitest';
import { workerWarning } from './workers';

describe('the no-worker banner', () => {
  const now = Date.parse('2026-12-01T12:00:00Z');
  it('is hidden while a worker is alive', () => {
    expect(workerWarning({ alive: 1, lastSeenAt: '2026-12-01T11:59:50Z' }, now)).toBeNull();
  });
  it('says for how long no worker was seen', () => {
    expect(workerWarning({ alive: 0, lastSeenAt: '2026-12-01T11:57:00Z' }, now)).toBe('Runs will queue: no worker seen for 3 min');
    expect(workerWarning({ alive: 0, lastSeenAt: null }, now)).toBe('Runs will queue: no worker has been seen');
  });
});
