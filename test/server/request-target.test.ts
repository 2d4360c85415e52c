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
      expect(v.target.pathname).toBe(pathname);
      expect(v.target.search).toBe(search);
      expect(v.target.url.pathname).toBe(pathname);
      expect(v.target.url.search).toBe(search);
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
        expect(v.target.pathname).toBe(pathOf(t));
        expect(v.target.url.pathname).toBe(pathOf(t));
        const segs = v.target.pathname.split('/').map((s) => s.replace(/%2e/gi, '.'));
        expect(segs).not.toContain('.');
        expect(segs).not.toContain('..');
        expect(v.target.pathname).not.toContain('\\');
      }),
      { numRuns: 2000 },
    );
  });

  it('the fast path (no URL parser) accepts only what the URL parser would, with the same path', () => {
    // The reading before the fast path, kept here as the reference: every target is decided by
    // both and must get the same verdict, path and query.
    const reference = (raw: string) => {
      if (!raw.startsWith('/') || raw.startsWith('//') || raw.includes('#')) return undefined;
      const q = raw.indexOf('?');
      const path = q < 0 ? raw : raw.slice(0, q);
      if (/\/(?:\.|%2e){1,2}(?=\/|$)/i.test(path)) return undefined;
      let url: URL;
      try {
        url = new URL(raw, 'http://control-plane.invalid');
      } catch {
        return undefined;
      }
      return url.pathname === path ? { pathname: url.pathname, search: url.search } : undefined;
    };
    // Every printable ASCII character, a few others, and the dots and slashes that make segments.
    const char = fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      fc.constantFrom('.', '/', '//', '..', '%2e', '\t', '\u00e9', '\u0000', '\u2028'),
    );
    const target = fc.array(char, { maxLength: 14 }).map((cs) => '/' + cs.join(''));
    const check = (t: string) => {
      const v = parseRequestTarget(t);
      // Asked again: the answer may now come from the targets lately found plain.
      expect(parseRequestTarget(t)).toEqual(v);
      const r = reference(t);
      expect(v.ok).toBe(r !== undefined);
      if (v.ok && r !== undefined) {
        expect(v.target.pathname).toBe(r.pathname);
        expect(v.target.search).toBe(r.search);
        expect(v.target.url.pathname).toBe(r.pathname);
        expect(v.target.url.search).toBe(r.search);
      }
    };
    fc.assert(fc.property(target, check), { numRuns: 20_000 });
    for (const t of [
      '/v1/flips',
      "/a/!$&'()*+,;=:@-._~",
      '/a//b/',
      '/a/.../b',
      '/.a/b.',
      '/a/./b',
      '/a/..',
      '/.',
      '/..',
      '/a|b',
      '/a`b',
      '/a{b}',
      '/a"b',
      '/a<b>',
      '/a^b',
      '/a%41',
    ])
      check(t);
  });
});
