import { describe, expect, it } from 'vitest';

describe('KS-16.1.3 openfeature-kill-switch/testing: the manual clock and the conformance suites', () => {
  it('is importable by its package name and exports what a backend test needs', async () => {
    // Through the exports map (the built dist), as a user's test imports it.
    const testing = await import('openfeature-kill-switch/testing');
    expect(Object.keys(testing).sort()).toEqual([
      'ManualClock',
      'describeFlipLogStoreConformance',
      'describeLedgerConformance',
    ]);
    const clock = new testing.ManualClock({ now: 0, wall: 1000 });
    let fired = 0;
    clock.setTimeout(() => fired++, 50);
    clock.advanceSync(49);
    expect(fired).toBe(0);
    clock.advanceSync(1);
    expect(fired).toBe(1);
    expect(clock.wallNow()).toBe(1050);
  });

  it('is not part of the root export: a worker never loads Vitest', async () => {
    const root = await import('openfeature-kill-switch');
    expect(Object.keys(root)).not.toContain('ManualClock');
    expect(Object.keys(root)).not.toContain('describeFlipLogStoreConformance');
  });
});
