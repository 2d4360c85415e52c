import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../src/server/index.js';
import type { FlipLogStore } from '../../src/store/index.js';
import { TOKENS, call, halt, startTestServer } from './helpers.js';

let cp: ControlPlane;
let store: FlipLogStore;

beforeEach(async () => {
  ({ cp, store } = await startTestServer());
});
afterEach(async () => {
  await cp.close();
});

const admin = TOKENS.admin;

describe('KS-5.1.1 POST /v1/flips appends a flip whose actor is the token name', () => {
  it('a halt answers 201 with the stored record and the state shows it', async () => {
    const r = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: halt('acme', { mode: 'hold' }),
    });
    expect(r.status).toBe(201);
    expect(r.json.flip).toMatchObject({
      seq: 1,
      actor: 'ada',
      action: 'halt',
      selector: { tenant: 'acme' },
      mode: 'hold',
    });
    expect(r.json.duplicate).toBe(false);
    expect(r.json.fleet).toMatchObject({ seq: 1, applied: 0, complete: true, completeAfterMs: 0 });
    const s = await call(cp, 'GET', '/v1/state', { token: admin });
    expect(s.status).toBe(200);
    expect(s.json.seq).toBe(1);
    expect(s.json.halts.map((h: { id: string }) => h.id)).toEqual([r.json.flip.id]);
  });

  it("the answer's head carries each of its headers once, the length matching the body (raw bytes)", async () => {
    const { connect } = await import('node:net');
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect(cp.port, '127.0.0.1');
        let text = '';
        s.on('data', (c: Buffer) => (text += c.toString('latin1')));
        s.on('end', () => resolve(text));
        s.on('error', reject);
        s.end(request);
      });
    const body = JSON.stringify(halt('acme'));
    const ok = await raw(
      `POST /v1/flips HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    // 201 from the flat list of headers; 401 from the object form (it adds www-authenticate).
    const refused = await raw(
      `POST /v1/flips HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer nope-0123456789abcdef\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    for (const [answer, status] of [
      [ok, 201],
      [refused, 401],
    ] as const) {
      const [head, rest] = answer.split('\r\n\r\n') as [string, string];
      const lines = head.split('\r\n');
      expect(lines[0]).toBe(`HTTP/1.1 ${status} ${status === 201 ? 'Created' : 'Unauthorized'}`);
      const names = lines.slice(1).map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
      expect(new Set(names).size).toBe(names.length);
      const header = (n: string) =>
        lines
          .find((l) => l.toLowerCase().startsWith(`${n}:`))
          ?.slice(n.length + 1)
          .trim();
      expect(header('content-type')).toBe('application/json; charset=utf-8');
      expect(header('cache-control')).toBe('no-store');
      expect(header('x-content-type-options')).toBe('nosniff');
      expect(Number(header('content-length'))).toBe(Buffer.byteLength(rest, 'latin1'));
      expect(JSON.parse(rest)).toBeTypeOf('object');
      if (status === 401) expect(header('www-authenticate')).toBe('Bearer realm="killswitch"');
    }
  });

  it('a retried id answers 200 with the stored record and appends nothing', async () => {
    const a = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: halt('acme', { id: 'inc-42' }),
    });
    const b = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: halt('acme', { id: 'inc-42' }),
    });
    expect(a.status).toBe(201);
    expect(b.status).toBe(200);
    expect(b.json.duplicate).toBe(true);
    expect(b.json.flip).toEqual(a.json.flip);
    expect((await store.head()).seq).toBe(1);
  });

  it('an id reused for another flip answers 409 KS_ID_CONFLICT', async () => {
    await call(cp, 'POST', '/v1/flips', { token: admin, body: halt('acme', { id: 'inc-42' }) });
    const r = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: halt('other', { id: 'inc-42' }),
    });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('KS_ID_CONFLICT');
    expect((await store.head()).seq).toBe(1);
  });
});

describe('KS-5.1.3 a resume that lifts nothing is refused with 409 and not appended', () => {
  it('refuses a resume with no matching halt, then lifts exactly the halt it names', async () => {
    const none = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: { action: 'resume', selector: { tenant: 'acme' }, reason: 'fixed' },
    });
    expect(none.status).toBe(409);
    expect(none.json.error.code).toBe('KS_RESUME_REFUSED');
    expect((await store.head()).seq).toBe(0);

    await call(cp, 'POST', '/v1/flips', { token: admin, body: halt('acme') });
    const broader = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: { action: 'resume', selector: {}, reason: 'fixed' },
    });
    expect(broader.status).toBe(409);
    const ok = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: {
        action: 'resume',
        selector: { tenant: 'acme' },
        reason: 'fixed',
        release: 'v2',
        id: 'res-1',
      },
    });
    expect(ok.status).toBe(201);
    expect(ok.json.flip).toMatchObject({ seq: 2, action: 'resume', release: 'v2' });
    // A retry of the same resume is the same flip, not a refusal.
    const again = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: {
        action: 'resume',
        selector: { tenant: 'acme' },
        reason: 'fixed',
        release: 'v2',
        id: 'res-1',
      },
    });
    expect(again.status).toBe(200);
    expect(again.json.duplicate).toBe(true);
    expect((await call(cp, 'GET', '/v1/state', { token: admin })).json.halts).toEqual([]);
  });
});

describe('KS-5.1.2 GET /v1/flips pages the log', () => {
  it('returns records after `after`, at most `limit`, and the next cursor', async () => {
    for (let i = 0; i < 5; i++)
      await call(cp, 'POST', '/v1/flips', { token: admin, body: halt(`t${i}`) });
    const p1 = await call(cp, 'GET', '/v1/flips?limit=2', { token: TOKENS.viewer });
    expect(p1.status).toBe(200);
    expect(p1.json.flips.map((f: { seq: number }) => f.seq)).toEqual([1, 2]);
    expect(p1.json).toMatchObject({ head: 5, next: 2 });
    const p2 = await call(cp, 'GET', '/v1/flips?after=2&limit=10', { token: TOKENS.viewer });
    expect(p2.json.flips.map((f: { seq: number }) => f.seq)).toEqual([3, 4, 5]);
    expect(p2.json.next).toBeNull();
  });

  it.each(['after=-1', 'limit=0', 'limit=1001', 'after=x', 'limit=1&limit=2', 'bogus=1'])(
    'refuses the query %s with 400 and issues',
    async (q) => {
      const r = await call(cp, 'GET', `/v1/flips?${q}`, { token: admin });
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe('KS_INVALID_INPUT');
      expect(r.json.error.issues.length).toBeGreaterThan(0);
    },
  );
});

describe('KS-5.1.5 every body is validated: 400 with issues, nothing appended', () => {
  const cases: [string, { body?: unknown; raw?: string; headers?: Record<string, string> }][] = [
    ['not JSON', { raw: '{"action":' }],
    ['an empty body', { raw: '' }],
    ['an array', { body: [halt()] }],
    ['a missing reason', { body: { action: 'halt', selector: { tenant: 'acme' } } }],
    ['an empty reason', { body: halt('acme', { reason: '   ' }) }],
    ['an actor in the body', { body: halt('acme', { actor: 'someone-else' }) }],
    ['an unknown field', { body: halt('acme', { extra: 1 }) }],
    ['an unknown selector key', { body: { ...halt(), selector: { team: 'x' } } }],
    ['a selector value with white space', { body: { ...halt(), selector: { tenant: ' acme' } } }],
    ['a bad mode', { body: halt('acme', { mode: 'pause' }) }],
    [
      'a resume with a mode',
      { body: { action: 'resume', selector: { tenant: 'acme' }, reason: 'r', mode: 'hold' } },
    ],
    ['a bad action', { body: halt('acme', { action: 'stop' }) }],
    ['a wait above the bound', { body: halt('acme', { wait: 30_001 }) }],
    ['a negative wait', { body: halt('acme', { wait: -1 }) }],
    ['a bad id', { body: halt('acme', { id: 'has space' }) }],
  ];
  it.each(cases)('refuses %s', async (_name, req) => {
    const r = await call(cp, 'POST', '/v1/flips', { token: admin, ...req });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('KS_INVALID_INPUT');
    expect(Array.isArray(r.json.error.issues)).toBe(true);
    expect(r.json.error.issues.length).toBeGreaterThan(0);
    expect(JSON.stringify(r.json)).not.toMatch(/at .*\.(?:ts|js):\d+/);
    expect((await store.head()).seq).toBe(0);
  });

  it('refuses a non-JSON content type with 415', async () => {
    const r = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      raw: JSON.stringify(halt()),
      headers: { 'content-type': 'text/plain' },
    });
    expect(r.status).toBe(415);
    expect((await store.head()).seq).toBe(0);
  });

  it.each([
    ['a missing workerId', { seq: 1 }],
    ['a negative seq', { workerId: 'w1', seq: -1 }],
    ['a fractional seq', { workerId: 'w1', seq: 1.5 }],
    ['a bad worker id', { workerId: 'w 1', seq: 1 }],
    ['an unknown field', { workerId: 'w1', seq: 1, x: 1 }],
  ])('refuses an ack with %s', async (_n, body) => {
    const r = await call(cp, 'POST', '/v1/acks', { token: admin, body });
    expect(r.status).toBe(400);
    expect(r.json.error.issues.length).toBeGreaterThan(0);
    expect((await call(cp, 'GET', '/v1/workers', { token: admin })).json.workers).toEqual([]);
  });
});

describe('KS-5.1.6 request bodies are size-limited (413)', () => {
  it('refuses a body over the limit and appends nothing', async () => {
    const r = await call(cp, 'POST', '/v1/flips', {
      token: admin,
      body: halt('acme', { reason: 'x'.repeat(70_000) }),
    });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('KS_PAYLOAD_TOO_LARGE');
    expect((await store.head()).seq).toBe(0);
  });
});

describe('KS-5.1.6 a streamed (chunked) body over the limit is refused too', () => {
  it('answers 413 without a content-length', async () => {
    const chunk = new TextEncoder().encode('x'.repeat(16_384));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 8) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await fetch(cp.url + '/v1/flips', {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect((await store.head()).seq).toBe(0);
  });
});

describe('KS-5.1.7 unknown routes answer 404, wrong methods 405 with Allow', () => {
  it('404 for an unknown path', async () => {
    const r = await call(cp, 'GET', '/v1/nothing', { token: admin });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('KS_NOT_FOUND');
  });
  it.each([
    ['DELETE', '/v1/flips', 'GET, POST'],
    ['POST', '/v1/state', 'GET'],
    ['GET', '/v1/acks', 'POST'],
    ['PUT', '/healthz', 'GET'],
  ])('405 for %s %s', async (method, path, allow) => {
    const r = await call(cp, method, path, { token: admin });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe(allow);
    expect(r.json.error.code).toBe('KS_METHOD_NOT_ALLOWED');
  });
});

describe('KS-5.1.9 acks and workers', () => {
  it('an ack answers head, server time and the lease; the worker is listed with its lag', async () => {
    await call(cp, 'POST', '/v1/flips', { token: admin, body: halt('a') });
    await call(cp, 'POST', '/v1/flips', { token: admin, body: halt('b') });
    const a = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'w1', release: 'v1', seq: 1 },
    });
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({ head: 2, staleAfterMs: 3000 });
    // KS-5.1.15 an ISO 8601 time label.
    expect(a.json.serverTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const w = await call(cp, 'GET', '/v1/workers', { token: TOKENS.viewer });
    expect(w.json.workers).toEqual([
      expect.objectContaining({
        id: 'w1',
        release: 'v1',
        connected: false,
        lastAckSeq: 1,
        lag: 1,
        stale: false,
      }),
    ]);
    const [worker] = w.json.workers;
    expect(Date.parse(worker.leaseExpiresAt)).toBe(Date.parse(worker.lastAckAt) + 3000 + 100);
  });

  it('GET /healthz needs no token', async () => {
    const r = await call(cp, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ok: true, head: 0, store: 'memory' });
  });
});

describe('KS-5.1.10 the route table takes extra routes', () => {
  it('a route added while running is served, and its auth applies', async () => {
    cp.router.add({
      method: 'GET',
      path: '/ofrep/v1/evaluate/flags/:key',
      auth: 'authenticated',
      handle: ({ res, params }) => {
        res.end(JSON.stringify({ key: params['key'] }));
      },
    });
    expect(
      (await call(cp, 'GET', '/ofrep/v1/evaluate/flags/kill-switch', { token: TOKENS.viewer }))
        .json,
    ).toEqual({
      key: 'kill-switch',
    });
    expect((await call(cp, 'GET', '/ofrep/v1/evaluate/flags/kill-switch')).status).toBe(401);
  });
});
