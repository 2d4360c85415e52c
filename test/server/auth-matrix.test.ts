import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../src/server/index.js';
import type { FlipLogStore } from '../../src/store/index.js';
import { TOKENS, call, halt, startTestServer } from './helpers.js';

let cp: ControlPlane;
let store: FlipLogStore;
beforeAll(async () => {
  ({ cp, store } = await startTestServer());
});
afterAll(async () => {
  await cp.close();
});

type Who =
  | 'none'
  | 'bad'
  | 'expired'
  | 'viewer'
  | 'worker'
  | 'operator'
  | 'operatorNoResume'
  | 'capOperator'
  | 'admin';
const WHO: Who[] = [
  'none',
  'bad',
  'expired',
  'viewer',
  'worker',
  'operator',
  'operatorNoResume',
  'capOperator',
  'admin',
];
const tokenOf = (w: Who): string | undefined =>
  w === 'none' ? undefined : w === 'bad' ? 'not-a-real-token-at-all' : TOKENS[w];
const unauth = (w: Who) => w === 'none' || w === 'bad' || w === 'expired';

async function status(method: string, path: string, who: Who, body?: unknown): Promise<number> {
  if (path === '/v1/stream') {
    const t = tokenOf(who);
    const ac = new AbortController();
    const res = await fetch(cp.url + path, {
      headers: t ? { authorization: `Bearer ${t}` } : {},
      signal: ac.signal,
    });
    ac.abort();
    return res.status;
  }
  const t = tokenOf(who);
  return (
    await call(cp, method, path, {
      ...(t ? { token: t } : {}),
      ...(body === undefined ? {} : { body }),
    })
  ).status;
}

describe('KS-5.2.2 reading routes need a valid token of any role; KS-5.2.1 none, bad or expired is 401', () => {
  const routes: [string, string, unknown?][] = [
    ['GET', '/v1/state'],
    ['GET', '/v1/flips'],
    ['GET', '/v1/workers'],
    ['GET', '/v1/stream'],
  ];
  for (const [method, path, body] of routes) {
    it.each(WHO)(`${method} ${path} as %s`, async (who) => {
      expect(await status(method, path, who, body)).toBe(unauth(who) ? 401 : 200);
    });
  }
  // KS-17.2.1: only worker credentials (and admins) acknowledge; each acts as an id of its own.
  it.each(WHO)('POST /v1/acks as %s', async (who) => {
    const got = await status('POST', '/v1/acks', who, { seq: 0, workerId: `w-${who}` });
    expect(got).toBe(unauth(who) ? 401 : who === 'worker' || who === 'admin' ? 200 : 403);
  });
  it.each(WHO)('GET /healthz as %s is public', async (who) => {
    expect(await status('GET', '/healthz', who)).toBe(200);
  });
});

describe('KS-5.2.3 flipping needs operator within scope or admin; resume its own permission; KS-5.2.4 a refused flip appends nothing', () => {
  const cases: [string, Record<string, string>, Record<Who, number>][] = [
    [
      'halt {tenant=acme}',
      { tenant: 'acme' },
      {
        none: 401,
        bad: 401,
        expired: 401,
        viewer: 403,
        worker: 403,
        operator: 201,
        operatorNoResume: 201,
        capOperator: 403,
        admin: 201,
      },
    ],
    [
      'halt {tenant=acme, capability=x} (narrower than the scope)',
      { tenant: 'acme', capability: 'x' },
      {
        none: 401,
        bad: 401,
        expired: 401,
        viewer: 403,
        worker: 403,
        operator: 201,
        operatorNoResume: 201,
        capOperator: 403,
        admin: 201,
      },
    ],
    [
      'halt {capability=payments.refund}',
      { capability: 'payments.refund' },
      {
        none: 401,
        bad: 401,
        expired: 401,
        viewer: 403,
        worker: 403,
        operator: 403,
        operatorNoResume: 403,
        capOperator: 201,
        admin: 201,
      },
    ],
    [
      'halt {tenant=other}',
      { tenant: 'other' },
      {
        none: 401,
        bad: 401,
        expired: 401,
        viewer: 403,
        worker: 403,
        operator: 403,
        operatorNoResume: 403,
        capOperator: 403,
        admin: 201,
      },
    ],
    [
      'halt {} (global)',
      {},
      {
        none: 401,
        bad: 401,
        expired: 401,
        viewer: 403,
        worker: 403,
        operator: 403,
        operatorNoResume: 403,
        capOperator: 403,
        admin: 201,
      },
    ],
  ];
  for (const [name, selector, expected] of cases) {
    it.each(WHO)(`${name} as %s`, async (who) => {
      const before = (await store.head()).seq;
      const got = await status('POST', '/v1/flips', who, { ...halt(), selector });
      expect(got).toBe(expected[who]);
      expect((await store.head()).seq).toBe(got === 201 ? before + 1 : before);
    });
  }

  const resumeExpected: Record<Who, number> = {
    none: 401,
    bad: 401,
    expired: 401,
    viewer: 403,
    worker: 403,
    operator: 201,
    operatorNoResume: 403,
    capOperator: 403,
    admin: 201,
  };
  it.each(WHO)('resume {tenant=acme} as %s', async (who) => {
    // Placed by the operator: an operator lifts only operators' halts (KS-17.5.1, below).
    await call(cp, 'POST', '/v1/flips', { token: TOKENS.operator, body: halt('acme') });
    const before = (await store.head()).seq;
    const got = await status('POST', '/v1/flips', who, {
      action: 'resume',
      selector: { tenant: 'acme' },
      reason: 'ok',
    });
    expect(got).toBe(resumeExpected[who]);
    expect((await store.head()).seq).toBe(got === 201 ? before + 1 : before);
  });

  it("KS-17.5.1 an operator with resume may not lift an admin's halt in its scope; the admin may", async () => {
    await call(cp, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('acme') });
    const before = (await store.head()).seq;
    expect(
      await status('POST', '/v1/flips', 'operator', {
        action: 'resume',
        selector: { tenant: 'acme' },
        reason: 'ok',
      }),
    ).toBe(403);
    expect((await store.head()).seq).toBe(before);
    expect(
      await status('POST', '/v1/flips', 'admin', {
        action: 'resume',
        selector: { tenant: 'acme' },
        reason: 'ok',
      }),
    ).toBe(201);
  });

  it('a 403 names what is missing, and the actor is the token name', async () => {
    const r = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.operator,
      body: { ...halt(), selector: { tenant: 'zzz' } },
    });
    expect(r.json.error).toMatchObject({ code: 'KS_FORBIDDEN' });
    expect(r.json.error.message).toMatch(/tenant=acme/);
    const ok = await call(cp, 'POST', '/v1/flips', {
      token: TOKENS.capOperator,
      body: { ...halt(), selector: { capability: 'payments.refund' } },
    });
    expect(ok.json.flip.actor).toBe('cora');
  });
});
