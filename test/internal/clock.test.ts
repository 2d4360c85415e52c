import { describe, expect, it } from 'vitest';
import { ManualClock, isClock, systemClock } from '../../src/internal/clock.js';

describe('KS-7.1.12 one injectable clock: systemClock', () => {
  it('reads a monotonic scale that never goes back, and the wall clock apart from it', async () => {
    const a = systemClock.now();
    const aRef = performance.timeOrigin + performance.now();
    const wall = systemClock.wallNow();
    const wallRef = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    const b = systemClock.now();
    expect(b).toBeGreaterThan(a);
    // anchored to the wall clock at process start: epoch-like, but it ticks with performance.now();
    // each reading is compared with its reference read right beside it (a sleep under load is long)
    expect(Math.abs(a - aRef)).toBeLessThan(50);
    expect(Math.abs(wall - wallRef)).toBeLessThan(50);
  });

  it('fires and clears timers on the monotonic scale', async () => {
    let fired = 0;
    const cleared = systemClock.setTimeout(() => fired++, 1);
    systemClock.clearTimeout(cleared);
    const start = systemClock.now();
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 10));
    expect(systemClock.now() - start).toBeGreaterThanOrEqual(9);
    expect(fired).toBe(0);
  });

  it('is recognised by the option check, and partial objects are not', () => {
    expect(isClock(systemClock)).toBe(true);
    expect(isClock(new ManualClock())).toBe(true);
    expect(isClock({ now: () => 1, setTimeout() {}, clearTimeout() {} })).toBe(false);
    expect(isClock(() => 1)).toBe(false);
    expect(isClock(undefined)).toBe(false);
  });
});

describe('KS-7.1.12 ManualClock: time moves only when told', () => {
  it('starts where asked, and reads both scales', () => {
    const c = new ManualClock({ now: 500, wall: Date.parse('2026-03-01T00:00:00Z') });
    expect(c.now()).toBe(500);
    expect(new Date(c.wallNow()).toISOString()).toBe('2026-03-01T00:00:00.000Z');
    expect(new ManualClock().now()).toBe(0);
  });

  it('fires timers in due order, at their own time, including timers set while advancing', async () => {
    const c = new ManualClock();
    const seen: [string, number][] = [];
    c.setTimeout(() => seen.push(['b', c.now()]), 20);
    c.setTimeout(() => {
      seen.push(['a', c.now()]);
      c.setTimeout(() => seen.push(['a2', c.now()]), 5);
    }, 10);
    c.setTimeout(() => seen.push(['late', c.now()]), 100);
    await c.advance(30);
    expect(seen).toEqual([
      ['a', 10],
      ['a2', 15],
      ['b', 20],
    ]);
    expect(c.now()).toBe(30);
    expect(c.pending).toBe(1);
    expect(c.dueTimes()).toEqual([100]);
  });

  it('lets promise chains started by a timer run before the next timer fires (advance)', async () => {
    const c = new ManualClock();
    const seen: string[] = [];
    c.setTimeout(() => void Promise.resolve().then(() => seen.push('chain of t1')), 1);
    c.setTimeout(() => seen.push('t2'), 2);
    await c.advance(2);
    expect(seen).toEqual(['chain of t1', 't2']);
  });

  it('advanceSync fires the same timers without waiting for anything', () => {
    const c = new ManualClock();
    const seen: number[] = [];
    const h = c.setTimeout(() => seen.push(1), 1);
    c.setTimeout(() => seen.push(2), 2);
    c.clearTimeout(h);
    c.clearTimeout('not a handle');
    c.advanceSync(2);
    expect(seen).toEqual([2]);
    expect(c.now()).toBe(2);
  });

  it('a wall-clock step moves labels only: monotonic time and due timers stay put', () => {
    const c = new ManualClock({ now: 1_000, wall: 10_000_000 });
    let fired = false;
    c.setTimeout(() => (fired = true), 3_000);
    c.stepWall(-600_000); // back 10 minutes
    expect(c.wallNow()).toBe(9_400_000);
    expect(c.now()).toBe(1_000);
    c.advanceSync(2_999);
    expect(fired).toBe(false);
    c.stepWall(+3_600_000); // forward an hour
    expect(fired).toBe(false);
    c.advanceSync(1);
    expect(fired).toBe(true);
    expect(c.wallNow()).toBe(10_000_000 - 600_000 + 3_600_000 + 3_000);
  });

  it('never moves backwards when asked to advance by a negative amount', () => {
    const c = new ManualClock({ now: 10 });
    c.advanceSync(-5);
    expect(c.now()).toBe(10);
  });
});
