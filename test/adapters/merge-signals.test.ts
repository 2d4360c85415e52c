import { describe, expect, it } from 'vitest';
import { CallSignal, mergeSignals } from '../../src/adapters/internal/merge-signals.js';

describe('KS-14.1.3 mergeSignals: a call signal that follows its sources', () => {
  it('aborts with the first source to abort, and only once', () => {
    const a = new AbortController();
    const b = new AbortController();
    const m = mergeSignals(a.signal, undefined, b.signal);
    b.abort('second');
    a.abort('first');
    expect(m.signal.aborted).toBe(true);
    expect(m.signal.reason).toBe('second');
  });

  it('after dispose a source no longer reaches it (no listener left behind)', () => {
    const a = new AbortController();
    const b = new AbortController();
    const m = mergeSignals(a.signal, b.signal);
    m.dispose();
    a.abort('late');
    expect(m.signal.aborted).toBe(false);
  });

  it('passes a single signal through, and starts aborted when a source already is', () => {
    const a = new AbortController();
    expect(mergeSignals(undefined, a.signal).signal).toBe(a.signal);
    a.abort('gone');
    const m = mergeSignals(new AbortController().signal, a.signal);
    expect(m.signal.aborted).toBe(true);
    expect(m.signal.reason).toBe('gone');
  });
});

describe('KS-14.1.3 CallSignal: one call signal, merged only when read', () => {
  it('merges on first read: aborts with the first source to abort, and is the same signal each read', () => {
    const guard = new AbortController();
    const run = new AbortController();
    const call = new CallSignal(guard.signal, run.signal, undefined);
    const s = call.signal;
    expect(call.signal).toBe(s);
    run.abort('run stopped');
    guard.abort('halt');
    expect(s.aborted).toBe(true);
    expect(s.reason).toBe('run stopped');
  });

  it('link feeds a controller the caller made, with its own reason, from every source and also', () => {
    const guard = new AbortController();
    const framework = new AbortController();
    const call = new CallSignal(guard.signal, new AbortController().signal);
    const upstream = new AbortController();
    call.link(upstream, { reason: () => 'fixed', also: framework.signal });
    framework.abort('caller');
    expect(upstream.signal.reason).toBe('fixed');
    const other = new AbortController();
    call.link(other);
    guard.abort('halt');
    expect(other.signal.reason).toBe('halt');
  });

  it('dispose removes every listener: a later abort of a source reaches neither', () => {
    const guard = new AbortController();
    const run = new AbortController();
    const call = new CallSignal(guard.signal, run.signal);
    const merged = call.signal;
    const linked = new AbortController();
    call.link(linked);
    call.dispose();
    run.abort('late');
    expect(merged.aborted).toBe(false);
    expect(linked.signal.aborted).toBe(false);
    // Read after dispose: the guard's own signal, no new listener on the run's.
    expect(call.signal).toBe(merged);
    expect(new CallSignal(guard.signal, run.signal).signal.aborted).toBe(true);
  });

  it('a source already aborted aborts a link at once', () => {
    const run = new AbortController();
    run.abort('stopped before');
    const call = new CallSignal(new AbortController().signal, run.signal);
    const target = new AbortController();
    call.link(target);
    expect(target.signal.reason).toBe('stopped before');
    expect(call.signal.reason).toBe('stopped before');
  });

  it('a source given as a function is asked for its signal only when the signals are merged or linked', () => {
    let asked = 0;
    const run = new AbortController();
    const call = new CallSignal(new AbortController().signal, () => {
      asked++;
      return run.signal;
    });
    expect(asked).toBe(0);
    const s = call.signal;
    expect(asked).toBe(1);
    run.abort('run stopped');
    expect(s.reason).toBe('run stopped');
    call.dispose();
  });
});
