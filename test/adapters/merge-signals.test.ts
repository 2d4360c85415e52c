import { describe, expect, it } from 'vitest';
import { mergeSignals } from '../../src/adapters/internal/merge-signals.js';

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
