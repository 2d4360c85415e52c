import { describe, expect, it } from 'vitest';
import { CONSOLE_SCRIPT } from '../../src/console/console-script.js';
import { ApiPath, StreamEvent } from '../../src/protocol/index.js';

// The console's script is plain browser JavaScript served as a string: it cannot import the
// protocol module, so this test keeps its names equal to the protocol's.
describe('KS-6.1 the console script reads the stream by the protocol names', () => {
  it('compares the event name of each block with exactly the StreamEvent values', () => {
    const names = [...CONSOLE_SCRIPT.matchAll(/event === '([a-z]+)'/g)].map((m) => m[1]);
    expect(new Set(names)).toEqual(new Set(Object.values(StreamEvent)));
  });

  it('opens the stream and reads the fleet at the protocol paths', () => {
    const paths = [...CONSOLE_SCRIPT.matchAll(/'(\/v1\/[a-z/]+)/g)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThan(0);
    const known = Object.values(ApiPath).map((p) => p.replace(/:[a-z]+.*$/, ''));
    for (const p of paths) expect(known.some((k) => p === k || k.startsWith(p))).toBe(true);
    expect(paths).toContain(ApiPath.STREAM);
    expect(paths).toContain(ApiPath.WORKERS);
  });
});
