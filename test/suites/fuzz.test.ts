/**
 * KS-13.4 Fuzz suite: fast-check generates malformed and hostile requests (methods, request
 * targets with traversal and bad encodings, headers including oversized ones and bad UTF-8,
 * tokens, content types, SSE Last-Event-ID, bodies: random JSON, huge and deeply nested JSON,
 * bad UTF-8, prototype-pollution keys, mutated flips, chunked framing) and sends them raw over
 * TCP to every route of a control plane. For every request: no 5xx, no hang, nothing logged as an
 * internal error, no stack or path in any answer, the server still healthy, and the log unchanged
 * unless the answer was a 201 to an authorised POST /v1/flips. Valid flips are mixed in as a
 * positive control (they must be appended).
 *
 * `KS_FUZZ_RUNS` (default 2000) sets the number of requests; fast-check prints the seed and the
 * shrunk request on failure (replay with KS_SUITE_SEED).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { verifyChain } from '../../src/store/verify-chain.js';
import { rawRequest, type RawRequest } from './support/raw-http.js';
import { SUITE_TOKEN_SPECS, SUITE_TOKENS, suiteSeed } from './support/serve-process.js';

const RUNS = Number(process.env['KS_FUZZ_RUNS'] ?? 2000);
const OPERATOR_TOKEN = 'suite-operator-acme-0123456789abcdef';

let cp: ControlPlane;
let store: MemoryFlipLogStore;
const internalErrors: string[] = [];

beforeAll(async () => {
  store = new MemoryFlipLogStore();
  cp = await startControlPlane({
    store,
    port: 0,
    heartbeatMs: 1000,
    // A small limit, so "huge" bodies are cheap to generate on both sides of it.
    maxBodyBytes: 16 * 1024,
    auth: new TokenAuthenticator({
      tokens: [
        ...SUITE_TOKEN_SPECS,
        {
          name: 'suite-operator',
          token: OPERATOR_TOKEN,
          role: 'operator',
          scopes: [{ tenant: 'acme' }],
          resume: true,
        },
      ],
    }),
    logger: { info: () => {}, warn: () => {}, error: (m) => internalErrors.push(m) },
  });
});
afterAll(async () => {
  await cp?.close();
});

const ROUTES = ['/healthz', '/v1/flips', '/v1/state', '/v1/stream', '/v1/acks', '/v1/workers'];

const validFlip = () => ({
  action: 'halt',
  selector: { tenant: 'acme' },
  reason: 'fuzz positive control',
});

/** Values that tend to break parsers and validators. */
const nasty = fc.constantFrom<unknown>(
  null,
  true,
  0,
  -1,
  1.5,
  1e308,
  -0,
  '',
  ' ',
  '\u0000',
  '\ud800',
  '💥',
  'a'.repeat(5000),
  [],
  {},
  { __proto__: { admin: true } },
  JSON.parse('{"__proto__":{"polluted":true}}') as unknown,
  { constructor: { prototype: { polluted: true } } },
  ['halt'],
  '../../etc/passwd',
  '<script>alert(1)</script>',
  'Robert"); DROP TABLE flips;--',
);

/** A valid flip with one field replaced, dropped or added. */
const mutatedFlip = fc
  .record({
    field: fc.constantFrom(
      'action',
      'selector',
      'reason',
      'mode',
      'id',
      'release',
      'source',
      'wait',
      'actor',
      'seq',
      'hash',
      'prev',
      'selector.tenant',
      'selector.evil',
    ),
    value: fc.oneof(nasty, fc.jsonValue()),
    drop: fc.boolean(),
  })
  .map(({ field, value, drop }) => {
    const f: Record<string, unknown> = validFlip();
    if (field.startsWith('selector.')) {
      const sel: Record<string, unknown> = { tenant: 'acme' };
      if (drop) delete sel[field.slice(9)];
      else sel[field.slice(9)] = value;
      f['selector'] = sel;
    } else if (drop) delete f[field];
    else f[field] = value;
    return Buffer.from(JSON.stringify(f), 'utf8');
  });

const deepJson = fc
  .record({ depth: fc.integer({ min: 1, max: 12_000 }), kind: fc.constantFrom('[', '{') })
  .map(({ depth, kind }) =>
    Buffer.from(
      kind === '['
        ? '['.repeat(depth) + ']'.repeat(depth)
        : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
    ),
  );

const badUtf8 = fc
  .uint8Array({ minLength: 1, maxLength: 64 })
  .map((b) =>
    Buffer.concat([
      Buffer.from('{"action":"halt","selector":{"tenant":"'),
      Buffer.from([0xff, 0xfe, 0xc3, 0x28, ...b]),
      Buffer.from('"},"reason":"x"}'),
    ]),
  );

type BodyKind = 'valid' | 'other';
const bodyArb: fc.Arbitrary<{ kind: BodyKind; body: Buffer | undefined }> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.constant({
      kind: 'valid' as const,
      body: Buffer.from(JSON.stringify(validFlip())),
    }),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        workerId: fc.oneof(fc.constant('w1'), fc.string()),
        seq: fc.oneof(fc.nat(), nasty),
      })
      .map((a) => ({ kind: 'other' as const, body: Buffer.from(JSON.stringify(a)) })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'other' as const, body: undefined }) },
  { weight: 3, arbitrary: mutatedFlip.map((body) => ({ kind: 'other' as const, body })) },
  {
    weight: 2,
    arbitrary: fc
      .jsonValue()
      .map((v) => ({ kind: 'other' as const, body: Buffer.from(JSON.stringify(v) ?? 'null') })),
  },
  { weight: 2, arbitrary: deepJson.map((body) => ({ kind: 'other' as const, body })) },
  { weight: 1, arbitrary: badUtf8.map((body) => ({ kind: 'other' as const, body })) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 15 * 1024, max: 40 * 1024 }).map((n) => ({
      kind: 'other' as const,
      body: Buffer.from(JSON.stringify({ ...validFlip(), reason: 'r'.repeat(n) })),
    })),
  },
  {
    weight: 1,
    arbitrary: fc
      .string({ maxLength: 200 })
      .map((s) => ({ kind: 'other' as const, body: Buffer.from(s) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .uint8Array({ maxLength: 300 })
      .map((b) => ({ kind: 'other' as const, body: Buffer.from(b) })),
  },
);

const targetArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ROUTES) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...ROUTES),
        fc.array(
          fc.tuple(
            fc.constantFrom(
              'after',
              'limit',
              'worker',
              'release',
              'snapshot',
              'x',
              '__proto__',
              '',
            ),
            fc.oneof(
              fc.constantFrom(
                '-1',
                '0',
                '1',
                '1e3',
                '99999999999999999999',
                '%00',
                '%ff',
                '1.5',
                'a'.repeat(300),
              ),
              fc.string({ maxLength: 20 }),
            ),
          ),
          { maxLength: 4 },
        ),
      )
      .map(
        ([p, q]) =>
          `${p}?${q.map(([k, v]) => `${encodeURIComponent(k)}=${/%/.test(v) ? v : encodeURIComponent(v)}`).join('&')}`,
      ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '/v1/../v1/flips',
      '/v1/flips/../state',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/v1/%2e%2e/healthz',
      '//v1/flips',
      '/v1//flips',
      '/v1/flips/',
      '/V1/FLIPS',
      '/v1/flips%00',
      '/v1/flips;x=1',
      '/v1/flips#frag',
      '*',
      '//[',
      '/[',
      'http://evil.example/v1/flips',
      '/' + 'a'.repeat(8000),
      '/v1/stream?worker=%ff%fe',
      '/%',
      '/%zz',
      '/v1/flips?after=1&after=2',
    ),
  },
);

const tokenArb = fc.constantFrom<{ who: string; header: string | Buffer | undefined }>(
  { who: 'none', header: undefined },
  { who: 'admin', header: `Bearer ${SUITE_TOKENS.admin}` },
  { who: 'admin', header: `Bearer ${SUITE_TOKENS.admin}` },
  { who: 'viewer', header: `Bearer ${SUITE_TOKENS.viewer}` },
  { who: 'operator', header: `Bearer ${OPERATOR_TOKEN}` },
  { who: 'bad', header: 'Bearer ' },
  { who: 'bad', header: 'Basic YWRtaW46YWRtaW4=' },
  { who: 'bad', header: `Bearer ${SUITE_TOKENS.admin}x` },
  { who: 'bad', header: `Bearer ${SUITE_TOKENS.admin} extra` },
  { who: 'bad', header: 'Bearer ' + 'x'.repeat(9000) },
  {
    who: 'bad',
    header: Buffer.concat([Buffer.from('Bearer '), Buffer.from([0xff, 0xfe, 0x00, 0x80])]),
  },
  { who: 'bad', header: Buffer.from('Bearer tökén-ünïcödé', 'utf8') },
);

const contentTypeArb = fc.constantFrom<string | undefined>(
  undefined,
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/merge-patch+json',
  'application/jsonx',
  'text/plain',
  'text/event-stream',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  '',
  'application/json\u0000',
);

const lastEventIdArb = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('0', '1', '-1', '1e3', ' 2 ', '99999999999999999999', '0x10', 'NaN', '', '\t'),
  fc.nat().map(String),
  fc.string({ maxLength: 30 }),
  fc
    .uint8Array({ minLength: 1, maxLength: 20 })
    .map((b) => Buffer.from(b.filter((x) => x !== 10 && x !== 13))),
);

const hostileArb = fc.record({
  method: fc.constantFrom<string>(
    'GET',
    'POST',
    'POST',
    'POST',
    'PUT',
    'DELETE',
    'PATCH',
    'HEAD',
    'OPTIONS',
    'TRACE',
    'FOO',
    'get',
  ),
  target: targetArb,
  token: tokenArb,
  contentType: contentTypeArb,
  lastEventId: lastEventIdArb,
  body: bodyArb,
  chunked: fc.boolean(),
  oversizedHeader: fc.constantFrom<number>(0, 0, 0, 0, 0, 0, 0, 0, 20_000, 70_000),
  junkHeader: fc.option(
    fc.tuple(
      fc.constantFrom<string>(
        'x-forwarded-for',
        'x-real-ip',
        'origin',
        'cookie',
        'x-ks-actor',
        'expect',
        'accept',
      ),
      fc.string({ maxLength: 50 }).map((s) => s.replace(/[\r\n]/g, '')),
    ),
    { nil: undefined },
  ),
});

type Req = typeof hostileArb extends fc.Arbitrary<infer T> ? T : never;

/** Well-formed HTTP to a real route with a real method: the application's validation is what is tested. */
const ROUTE_TABLE: readonly (readonly [string, string])[] = [
  ['GET', '/healthz'],
  ['POST', '/v1/flips'],
  ['POST', '/v1/flips'],
  ['POST', '/v1/flips'],
  ['GET', '/v1/flips'],
  ['GET', '/v1/state'],
  ['GET', '/v1/stream'],
  ['POST', '/v1/acks'],
  ['POST', '/v1/acks'],
  ['GET', '/v1/workers'],
];

const wellFormedArb = fc
  .record({
    route: fc.constantFrom(...ROUTE_TABLE),
    query: fc.option(
      targetArb.map((t) => t.slice(t.indexOf('?') < 0 ? t.length : t.indexOf('?'))),
      {
        nil: undefined,
      },
    ),
    token: fc.constantFrom(
      { who: 'admin', header: `Bearer ${SUITE_TOKENS.admin}` as string | Buffer | undefined },
      { who: 'operator', header: `Bearer ${OPERATOR_TOKEN}` },
      { who: 'viewer', header: `Bearer ${SUITE_TOKENS.viewer}` },
    ),
    contentType: fc.constantFrom<string | undefined>(
      'application/json',
      'application/json; charset=utf-8',
      undefined,
    ),
    lastEventId: lastEventIdArb,
    body: bodyArb,
    chunked: fc.boolean(),
    oversizedHeader: fc.constant(0),
    junkHeader: fc.constant(undefined as [string, string] | undefined),
  })
  .map(({ route, query, ...rest }) => ({
    ...rest,
    method: route[0],
    target: route[1] + (query ?? ''),
  }));

const requestArb: fc.Arbitrary<Req> = fc.oneof(
  { weight: 3, arbitrary: wellFormedArb },
  { weight: 2, arbitrary: hostileArb },
);

function toRaw(r: Req): RawRequest {
  const headers: [string | Buffer, string | Buffer][] = [];
  if (r.token.header !== undefined) headers.push(['authorization', r.token.header]);
  if (r.contentType !== undefined) headers.push(['content-type', r.contentType]);
  if (r.lastEventId !== undefined) headers.push(['last-event-id', r.lastEventId]);
  if (r.oversizedHeader > 0) headers.push(['x-big', 'b'.repeat(r.oversizedHeader)]);
  if (r.junkHeader !== undefined) headers.push(r.junkHeader);
  return {
    method: r.method,
    target: r.target,
    headers,
    ...(r.body.body === undefined ? {} : { body: r.body.body }),
    chunked: r.chunked,
  };
}

let appended = 0;
let controls = 0;
const statuses = new Map<string, number>();

describe('KS-13.4.1 hostile and malformed requests against every route: no 5xx, no crash, nothing appended unless a valid authorised flip', () => {
  it(`${RUNS} generated requests`, async () => {
    const seed = suiteSeed('fuzz');
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        const before = (await store.head()).seq;
        const errorsBefore = internalErrors.length;
        const a = await rawRequest(cp.port, toRaw(r));
        const key = a.status === undefined ? 'closed' : String(a.status);
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        expect(a.timedOut, 'the request hung').toBe(false);
        if (a.status !== undefined) expect(a.status).toBeLessThan(500);
        expect(internalErrors.slice(errorsBefore)).toEqual([]);
        // KS-5.1.8: no stack trace or internal detail in any answer.
        expect(a.body).not.toMatch(/\n\s+at |node_modules|\/work\/|\.ts:\d+/);
        if (a.status !== undefined && a.status >= 400 && a.body !== '') {
          // Every error the control plane itself writes is a JSON error with a KS_ code. (Node's
          // HTTP parser answers malformed requests itself with an empty body.)
          const parsed = JSON.parse(a.body) as { error?: { code?: string } };
          expect(parsed.error?.code).toMatch(/^KS_[A-Z_]+$/);
        }
        const after = (await store.head()).seq;
        const isFlip =
          r.method === 'POST' && /^\/v1\/flips(?:\?|$)/.test(r.target) && a.status === 201;
        if (isFlip) {
          expect(['admin', 'operator']).toContain(r.token.who);
          expect(after).toBe(before + 1);
          appended++;
        } else {
          expect(after, `appended without a 201 (status ${a.status})`).toBe(before);
        }
        // The positive control: a valid flip, authorised, well framed, must be appended.
        if (
          r.body.kind === 'valid' &&
          r.method === 'POST' &&
          r.target === '/v1/flips' &&
          (r.token.who === 'admin' || r.token.who === 'operator') &&
          // KS-17.9.2: a state-changing request without a JSON content type is 415.
          r.contentType !== undefined &&
          /^application\/json(;|$)/.test(r.contentType) &&
          r.oversizedHeader === 0 &&
          r.junkHeader?.[0] !== 'expect' &&
          // Node's parser itself refuses control bytes in a header value (400, empty body).
          (r.lastEventId === undefined ||
            !Buffer.from(r.lastEventId).some((b) => (b < 0x20 && b !== 0x09) || b === 0x7f))
        ) {
          controls++;
          expect(a.status, `a valid authorised flip was refused: ${a.body}`).toBe(201);
        }
      }),
      { numRuns: RUNS, seed, verbose: 1, endOnFailure: true },
    );
    const health = await rawRequest(cp.port, { method: 'GET', target: '/healthz' });
    expect(health.status).toBe(200);
    const log = await store.read();
    expect(() => verifyChain(log)).not.toThrow();
    // Every stream the fuzz opened was closed by the client: none may linger as a subscriber or
    // as a connected worker (KS-6.1.5 keeps memory bounded only for live subscribers).
    const end = Date.now() + 5000;
    while (cp.stats().subscribers > 0 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    expect(cp.stats().subscribers).toBe(0);
    expect(cp.tracker.workers().filter((w) => w.connected)).toEqual([]);
    console.log(
      `[fuzz] ${RUNS} requests; answers ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; ` +
        `${appended} flips appended (${controls} positive controls); ${internalErrors.length} internal errors`,
    );
    expect(controls).toBeGreaterThan(0);
  }, 120_000);
});

describe('KS-13.4.2 request targets that are not URLs are the client’s error', () => {
  it.each(['//[', '//[::1', '//a:b:c/v1/flips', '//%zz'])(
    '%s answers 400, not 500',
    async (target) => {
      const before = internalErrors.length;
      const a = await rawRequest(cp.port, {
        method: 'GET',
        target,
        headers: [['authorization', `Bearer ${SUITE_TOKENS.admin}`]],
      });
      expect(a.status).toBeLessThan(500);
      expect(internalErrors.length).toBe(before);
    },
  );
});

describe('KS-13.4.3 a valid flip sent to a target that only resolves to /v1/flips', () => {
  const postValidFlip = (target: string) =>
    rawRequest(cp.port, {
      method: 'POST',
      target,
      headers: [
        ['authorization', `Bearer ${SUITE_TOKENS.admin}`],
        ['content-type', 'application/json'],
      ],
      body: Buffer.from(JSON.stringify(validFlip())),
    });

  it.each([
    '/v1/../v1/flips',
    '/v1/./flips',
    '/v1/%2e%2e/v1/flips',
    '/v1/%2E/flips',
    '/x/..%2fv1/flips/..',
    '/v1\\flips',
    '//control-plane/v1/flips',
    'http://control-plane/v1/flips',
    '/v1/flips#x',
  ])('%s answers 400 and appends nothing', async (target) => {
    const before = (await store.head()).seq;
    const errorsBefore = internalErrors.length;
    const a = await postValidFlip(target);
    expect(a.status).toBe(400);
    expect((JSON.parse(a.body) as { error: { code: string } }).error.code).toBe('KS_INVALID_INPUT');
    expect((await store.head()).seq).toBe(before);
    expect(internalErrors.length).toBe(errorsBefore);
  });

  it('the same flip to /v1/flips itself is appended (the control)', async () => {
    const before = (await store.head()).seq;
    const a = await postValidFlip('/v1/flips');
    expect(a.status).toBe(201);
    expect((await store.head()).seq).toBe(before + 1);
  });
});

describe('KS-13.4.1 KS-17.8.3 the fuzz under a flip rate limit', () => {
  it('generated flips from three tokens at 5/s (burst 10): every 429 names the limit with Retry-After and appends nothing; 201s stay within the budget', async () => {
    const limited = new MemoryFlipLogStore();
    const lcp = await startControlPlane({
      store: limited,
      port: 0,
      maxFlipsPerSecond: 5,
      flipBurst: 10,
      auth: new TokenAuthenticator({
        tokens: [
          ...SUITE_TOKEN_SPECS,
          {
            name: 'suite-operator',
            token: OPERATOR_TOKEN,
            role: 'operator',
            scopes: [{ tenant: 'acme' }],
            resume: true,
          },
        ],
      }),
      logger: { info: () => {}, warn: () => {}, error: (m) => internalErrors.push(m) },
    });
    try {
      const started = Date.now();
      const created = new Map<string, number>();
      let limitedCount = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            who: fc.constantFrom('admin', 'operator', 'viewer'),
            body: fc.oneof(
              { weight: 4, arbitrary: fc.constant(undefined) },
              { weight: 1, arbitrary: bodyArb },
            ),
            tenant: fc.constantFrom('acme', 'globex'),
          }),
          async ({ who, body, tenant }) => {
            const token =
              who === 'admin'
                ? SUITE_TOKENS.admin
                : who === 'operator'
                  ? OPERATOR_TOKEN
                  : SUITE_TOKENS.viewer;
            const before = (await limited.head()).seq;
            const payload =
              body?.body ??
              Buffer.from(
                JSON.stringify({ action: 'halt', selector: { tenant }, reason: 'fuzz rate' }),
              );
            const a = await rawRequest(lcp.port, {
              method: 'POST',
              target: '/v1/flips',
              headers: [
                ['authorization', `Bearer ${token}`],
                ['content-type', 'application/json'],
              ],
              body: payload,
            });
            expect(a.timedOut).toBe(false);
            expect(a.status).toBeLessThan(500);
            const after = (await limited.head()).seq;
            if (a.status === 201) {
              created.set(who, (created.get(who) ?? 0) + 1);
              expect(after).toBe(before + 1);
            } else expect(after).toBe(before);
            if (a.status === 429) {
              limitedCount++;
              expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
              expect(JSON.parse(a.body).error).toMatchObject({
                code: 'KS_LIMIT_EXCEEDED',
                message: expect.stringMatching(/maxFlipsPerSecond \(5\)/),
              });
              // A token that may not flip is refused for that (403), never told about a rate.
              expect(who).not.toBe('viewer');
            }
          },
        ),
        { numRuns: 150, seed: suiteSeed('fuzz-rate'), endOnFailure: true },
      );
      const seconds = (Date.now() - started) / 1000;
      for (const [who, n] of created) {
        // Per token: the burst plus the refill over the run, never more.
        expect(n, `${who} flipped ${n} times in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(
          10 + Math.ceil(5 * seconds) + 1,
        );
      }
      expect(created.get('viewer')).toBeUndefined();
      expect(limitedCount).toBeGreaterThan(0); // the limit was reached, so it was tested
      expect(verifyChain(await limited.read())).toHaveLength((await limited.head()).seq);
      console.log(
        `[fuzz-rate] ${JSON.stringify(Object.fromEntries(created))} flips in ${seconds.toFixed(1)} s, ${limitedCount} refused 429`,
      );
    } finally {
      await lcp.close();
    }
  }, 120_000);
});
