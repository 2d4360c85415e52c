import { describe, expect, it } from 'vitest';
import { StopStamps } from '../../src/drill/worker/stop-stamps.js';

// KS-9.2.4 a drill gateway's applied time is the moment it stopped, never later than the
// acknowledgement that vouches for it (which the check phase may send before the drill looks).
describe('StopStamps (the drill gateway member dates its stop at the event that completed it)', () => {
  it('a halt with nothing to cut: the apply time, not the later look', () => {
    const s = new StopStamps();
    s.applied(5, 100);
    // The acknowledgement left at 100.2; the look ran 12 ms later on a loaded host.
    expect(s.take(5, 112)).toBe(100);
  });

  it('a halt that cut a call it could not cut itself: the release of its last hold', () => {
    const s = new StopStamps();
    s.applied(5, 100);
    s.enforced(5, 130);
    expect(s.take(5, 142)).toBe(130);
  });

  it('a hold released before the apply that reached the seq does not date it', () => {
    const s = new StopStamps();
    s.applied(3, 50);
    s.enforced(3, 60);
    s.applied(4, 70);
    expect(s.take(4, 90)).toBe(70);
  });

  it('holds on later flips do not date an earlier stop, and stay for theirs', () => {
    const s = new StopStamps();
    s.applied(7, 100); // a snapshot jumped from 3 to 7; flip 6 still held
    s.enforced(8, 120);
    expect(s.take(5, 110)).toBe(100); // reported up to 5 while 6 was held
    s.enforced(6, 140);
    expect(s.take(7, 150)).toBe(140); // the apply of 7 kept, the release of 6 dates it
    s.applied(8, 160);
    expect(s.take(8, 170)).toBe(160); // 8's release at 120 came before its apply
  });

  it('no apply reaching the seq seen (a state taken without the event): the look itself', () => {
    const s = new StopStamps();
    expect(s.take(2, 42)).toBe(42);
    s.applied(2, 10);
    s.applied(2, 20); // not forward: ignored
    expect(s.take(3, 50)).toBe(50);
  });

  it('never later than the look', () => {
    const s = new StopStamps();
    s.applied(1, 100);
    s.enforced(1, 200);
    expect(s.take(1, 150)).toBe(150);
  });
});
