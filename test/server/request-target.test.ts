import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRequestTarget } from '../../src/server/request-target.js';

const pathOf = (t: string) => (t.includes('?') ? t.slice(0, t.indexOf('?')) : t);

describe('KS-5.1.13 the request target is routed only as it was sent', () => {
  it.each([
    ['/v1/flips', '/v1/flips', ''],
    ['/v1/flips?after=3&limit=10', '/v1/flips', '?after=3&limit=10'],
    [
      '/ofrep/v1/evaluate/flags/kill%2Fcapability',
      '/ofrep/v1/evaluate/flags/kill%2Fcapability',
      '',
    ],
    ['/v1//flips', '/v1//flips', ''],
    ['/v1/flips?next=/../x', '/v1/flips', '?next=/../x'],
    ['/', '/', ''],
  ])('%s is accepted as path %s', (target, pathname, search) => {
    const v = parseRequestTarget(target);
    expect(v.ok).toBe(true);
    if (v.ok) {
      expect(v.url.pathname).toBe(pathname);
      expect(v.url.search).toBe(search);
    }
  });

  it.each([
    ['/v1/../v1/flips', /normal form/],
    ['/v1/flips/..', /normal form/],
    ['/v1/./flips', /normal form/],
    ['/v1/%2e%2e/flips', /normal form/],
    ['/v1/%2E/flips', /normal form/],
    // Node 20's URL parser leaves this one as it is; the hand check must catch it.
    ['/v1/.b/../flips', /dot segment/],
    ['/v1\\flips', /normal form/],
    ['/v1/fl ips', /normal form/],
    ['//host/v1/flips', /"\/\/"/],
    ['//[', /"\/\/"/],
    ['http://host/v1/flips', /origin-form/],
    ['*', /origin-form/],
    ['', /origin-form/],
    ['/v1/flips#frag', /fragment/],
  ])('%s is refused (%s)', (target, reason) => {
    const v = parseRequestTarget(target);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reason).toMatch(reason);
  });

  it('no target is ever routed to a path other than the one it spells', () => {
    const segment = fc.oneof(
      fc.constantFrom('v1', 'flips', '.', '..', '%2e', '%2E%2e', '.%2e', '', 'a\\b', '%2f', '%00'),
      fc.string({ maxLength: 6 }),
    );
    const target = fc
      .tuple(
        fc.array(segment, { maxLength: 6 }),
        fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
      )
      .map(([segs, q]) => '/' + segs.join('/') + (q === undefined ? '' : `?${q}`));
    fc.assert(
      fc.property(target, (t) => {
        const v = parseRequestTarget(t);
        if (!v.ok) return;
        expect(v.url.pathname).toBe(pathOf(t));
        const segs = v.url.pathname.split('/').map((s) => s.replace(/%2e/gi, '.'));
        expect(segs).not.toContain('.');
        expect(segs).not.toContain('..');
        expect(v.url.pathname).not.toContain('\\');
      }),
      { numRuns: 2000 },
    );
  });
});
