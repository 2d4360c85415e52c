/**
 * KS-13.5 Auth suite. test/server/auth-matrix.test.ts already checks the reading routes and
 * halts/resumes for none/unknown/expired tokens and each role; this suite adds what it does not:
 * every route (HEAD included) times every malformed credential (empty, wrong scheme, huge,
 * non-ASCII bytes, a valid token with junk around it), every route times every role with its
 * exact expected status, operators scoped to another tenant or capability (look-alike values,
 * broader and narrower selectors, multi-attribute scopes), the resume permission on every role
 * (an admin can be denied it), and expiry at the exact instant with an injected clock. Every
 * refusal appends nothing; every 401 carries WWW-Authenticate: Bearer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../src/auth/index.js';
import { checkpointRoutes, startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { rawRequest, type RawAnswer } from './support/raw-http.js';
import { readClock } from '../fixtures/clock.js';

const EXPIRES_AT = Date.parse('2030-01-01T00:00:00.000Z');
let clock = EXPIRES_AT - 60_000;

const T = {
  viewer: 'auth-viewer-0123456789abcdef',
  acme: 'auth-operator-acme-0123456789',
  acmeNoResume: 'auth-operator-acme-noresume-0123',
  acmeChat: 'auth-operator-acme-chat-01234567',
  refund: 'auth-operator-refund-0123456789',
  globex: 'auth-operator-globex-0123456789',
  admin: 'auth-admin-0123456789abcdef',
  adminNoResume: 'auth-admin-noresume-0123456789',
  expiring: 'auth-expiring-admin-0123456789',
  worker: 'auth-worker-0123456789abcdef',
} as const;
type Who = keyof typeof T;

const SPECS: TokenSpec[] = [
  { name: 'viewer', token: T.viewer, role: 'viewer' },
  { name: 'acme', token: T.acme, role: 'operator', scopes: [{ tenant: 'acme' }], resume: true },
  { name: 'acme-noresume', token: T.acmeNoResume, role: 'operator', scopes: [{ tenant: 'acme' }] },
  {
    name: 'acme-chat',
    token: T.acmeChat,
    role: 'operator',
    scopes: [{ tenant: 'acme', feature: 'chat' }],
    resume: true,
  },
  {
    name: 'refund',
    token: T.refund,
    role: 'operator',
    scopes: [{ capability: 'payments.refund' }],
    resume: true,
  },
  {
    name: 'globex',
    token: T.globex,
    role: 'operator',
    scopes: [{ tenant: 'globex' }],
    resume: true,
  },
  { name: 'admin', token: T.admin, role: 'admin' },
  { name: 'worker', token: T.worker, role: 'worker', workers: ['auth-w-*'] },
  { name: 'admin-noresume', token: T.adminNoResume, role: 'admin', resume: false },
  {
    name: 'expiring',
    token: T.expiring,
    role: 'admin',
    expiresAt: new Date(EXPIRES_AT).toISOString(),
  },
];

let cp: ControlPlane;
let store: MemoryFlipLogStore;
beforeAll(async () => {
  store = new MemoryFlipLogStore();
  cp = await startControlPlane({
    store,
    port: 0,
    auth: new TokenAuthenticator({ tokens: SPECS, clock: readClock(() => clock) }),
    // Every route times every role: bursts of flips; the rate limit has its own suite (KS-17.8.3).
    maxFlipsPerSecond: 100_000,
    logger: { info: () => {}, warn: () => {}, error: (m) => console.error(m) },
  });
});
afterAll(async () => {
  await cp?.close();
});

async function send(
  method: string,
  target: string,
  authorization: string | Buffer | undefined,
  body?: unknown,
): Promise<RawAnswer> {
  const headers: [string, string | Buffer][] = [];
  if (authorization !== undefined) headers.push(['authorization', authorization]);
  if (body !== undefined) headers.push(['content-type', 'application/json']);
  return rawRequest(cp.port, {
    method,
    target,
    headers,
    ...(body === undefined ? {} : { body: Buffer.from(JSON.stringify(body)) }),
  });
}

let tenantCounter = 0;
let ackCounter = 0;
/** Every route with a request that would succeed for an admin. */
const ROUTES: readonly { name: string; method: string; target: string; body?: () => unknown }[] = [
  {
    name: 'POST /v1/flips',
    method: 'POST',
    target: '/v1/flips',
    body: () => ({ action: 'halt', selector: { tenant: `auth-${++tenantCounter}` }, reason: 'x' }),
  },
  { name: 'GET /v1/flips', method: 'GET', target: '/v1/flips' },
  { name: 'GET /v1/state', method: 'GET', target: '/v1/state' },
  { name: 'GET /v1/stream', method: 'GET', target: '/v1/stream' },
  { name: 'HEAD /v1/stream', method: 'HEAD', target: '/v1/stream' },
  { name: 'GET /v1/workers', method: 'GET', target: '/v1/workers' },
  {
    name: 'POST /v1/acks',
    method: 'POST',
    target: '/v1/acks',
    // A worker id of its own per request: an id is held by the credential that last acted as it
    // (KS-5.2.9), so reusing one across tokens would test that rule, not the role's.
    body: () => ({ workerId: `auth-w-${++ackCounter}`, seq: 0 }),
  },
];

const MALFORMED: readonly [string, string | Buffer][] = [
  ['empty header', ''],
  ['scheme only', 'Bearer'],
  ['scheme and a space', 'Bearer '],
  [
    'Basic scheme with the admin token',
    `Basic ${Buffer.from(`admin:${T.admin}`).toString('base64')}`,
  ],
  ['Token scheme', `Token ${T.admin}`],
  ['no scheme', T.admin],
  ['two tokens', `Bearer ${T.admin} ${T.admin}`],
  ['the admin token with a suffix', `Bearer ${T.admin}x`],
  ['a prefix of the admin token', `Bearer ${T.admin.slice(0, -1)}`],
  ['the admin token in quotes', `Bearer "${T.admin}"`],
  ['the admin token with a comma', `Bearer ${T.admin},`],
  ['huge (8 KiB)', `Bearer ${'A'.repeat(8192)}`],
  ['non-ASCII (UTF-8)', Buffer.from('Bearer jéton-ünïcödé-🔑-0123456789', 'utf8')],
  [
    'invalid UTF-8 bytes',
    Buffer.concat([Buffer.from('Bearer '), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0x80])]),
  ],
  [
    'Latin-1 look-alike of the admin token',
    Buffer.from(`Bearer ${T.admin.replace('a', 'à')}`, 'latin1'),
  ],
  [
    'the SHA-256 of the admin token',
    'Bearer 0000000000000000000000000000000000000000000000000000000000000000',
  ],
];

describe('KS-13.5.1 every route refuses every malformed credential with 401 and WWW-Authenticate, appending nothing', () => {
  for (const route of ROUTES) {
    it.each(MALFORMED)(`${route.name} with %s`, async (_name, header) => {
      const before = (await store.head()).seq;
      const a = await send(route.method, route.target, header, route.body?.());
      expect(a.status).toBe(401);
      expect(a.headers['www-authenticate']).toMatch(/^Bearer/);
      if (route.method !== 'HEAD') {
        expect(JSON.parse(a.body)).toMatchObject({ error: { code: 'KS_UNAUTHORIZED' } });
        expect(a.body).not.toContain(T.admin);
      }
      expect((await store.head()).seq).toBe(before);
    });
  }
  it('GET /healthz is public: a malformed credential does not matter there', async () => {
    for (const [, header] of MALFORMED) {
      expect((await send('GET', '/healthz', header)).status).toBe(200);
    }
  });
  it('the scheme is case-insensitive (RFC 9110) and extra spaces before the token are tolerated', async () => {
    expect((await send('GET', '/v1/state', `bearer ${T.viewer}`)).status).toBe(200);
    expect((await send('GET', '/v1/state', `BEARER   ${T.viewer}`)).status).toBe(200);
  });
});

describe('KS-13.5.2 every route times every role answers exactly as KS-5.2.2 and KS-17.2.1 say', () => {
  const readers: Who[] = [
    'viewer',
    'worker',
    'acme',
    'acmeNoResume',
    'refund',
    'globex',
    'admin',
    'adminNoResume',
  ];
  // KS-17.2.1: acknowledging needs a worker credential (or admin); every role reads.
  const acks = (who: Who) => who === 'worker' || who === 'admin' || who === 'adminNoResume';
  for (const route of ROUTES.filter((r) => r.name !== 'POST /v1/flips')) {
    it.each(readers)(`${route.name} as %s`, async (who) => {
      const a = await send(route.method, route.target, `Bearer ${T[who]}`, route.body?.());
      expect(a.status).toBe(route.name !== 'POST /v1/acks' || acks(who) ? 200 : 403);
    });
  }
  it('a worker token may neither halt nor resume, and appends nothing', async () => {
    const before = (await store.head()).seq;
    for (const action of ['halt', 'resume']) {
      const a = await send('POST', '/v1/flips', `Bearer ${T.worker}`, {
        action,
        selector: { tenant: 'acme' },
        reason: 'x',
      });
      expect(a.status).toBe(403);
      expect(JSON.parse(a.body).error.message).toMatch(/is a worker and may not flip/);
    }
    expect((await store.head()).seq).toBe(before);
  });
});

type Expect = Partial<Record<Who, number>>;
const ALL_FLIPPERS: Who[] = [
  'viewer',
  'acme',
  'acmeNoResume',
  'acmeChat',
  'refund',
  'globex',
  'admin',
  'adminNoResume',
];

/** Halt selectors and who may halt them (201) or not (403). KS-5.2.3 */
const HALTS: readonly [string, Record<string, string>, Expect][] = [
  [
    '{tenant=acme}',
    { tenant: 'acme' },
    {
      viewer: 403,
      acme: 201,
      acmeNoResume: 201,
      acmeChat: 403,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{tenant=acme, feature=chat} (exactly the multi-attribute scope)',
    { tenant: 'acme', feature: 'chat' },
    {
      viewer: 403,
      acme: 201,
      acmeNoResume: 201,
      acmeChat: 201,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{tenant=acme, feature=chat, runId=r1} (narrower)',
    { tenant: 'acme', feature: 'chat', runId: 'r1' },
    {
      viewer: 403,
      acme: 201,
      acmeNoResume: 201,
      acmeChat: 201,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{feature=chat} (broader than acme-chat: another tenant could be hit)',
    { feature: 'chat' },
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{tenant=ACME} (case look-alike of another tenant)',
    { tenant: 'ACME' },
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{tenant=acme-evil} (prefix look-alike)',
    { tenant: 'acme-evil' },
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{tenant=globex} (another tenant)',
    { tenant: 'globex' },
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 403,
      globex: 201,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{capability=payments.refund, tenant=globex} (narrower than the capability scope)',
    { capability: 'payments.refund', tenant: 'globex' },
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 201,
      globex: 201,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{capability=payments.refunds} (another capability)',
    { capability: 'payments.refunds' },
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
  [
    '{} (global)',
    {},
    {
      viewer: 403,
      acme: 403,
      acmeNoResume: 403,
      acmeChat: 403,
      refund: 403,
      globex: 403,
      admin: 201,
      adminNoResume: 201,
    },
  ],
];

describe('KS-13.5.3 operators flip only within their scopes; tokens scoped to another tenant or capability are refused with 403 and nothing appended', () => {
  for (const [name, selector, expected] of HALTS) {
    it.each(ALL_FLIPPERS)(`halt ${name} as %s`, async (who) => {
      const before = (await store.head()).seq;
      const a = await send('POST', '/v1/flips', `Bearer ${T[who]}`, {
        action: 'halt',
        selector,
        reason: 'auth suite',
      });
      expect(a.status, a.body).toBe(expected[who]);
      expect((await store.head()).seq).toBe(a.status === 201 ? before + 1 : before);
      if (a.status === 403) expect(JSON.parse(a.body).error.code).toBe('KS_FORBIDDEN');
      if (a.status === 201)
        expect(JSON.parse(a.body).flip.actor).toBe(SPECS.find((s) => s.token === T[who])!.name);
    });
  }
});

describe('KS-13.5.4 resume needs the resume permission on every role, an admin included', () => {
  const RESUMES: readonly [string, Record<string, string>, Expect][] = [
    [
      '{tenant=acme}',
      { tenant: 'acme' },
      {
        viewer: 403,
        acme: 201,
        acmeNoResume: 403,
        acmeChat: 403,
        refund: 403,
        globex: 403,
        admin: 201,
        adminNoResume: 403,
      },
    ],
    [
      '{tenant=acme, feature=chat}',
      { tenant: 'acme', feature: 'chat' },
      {
        viewer: 403,
        acme: 201,
        acmeNoResume: 403,
        acmeChat: 201,
        refund: 403,
        globex: 403,
        admin: 201,
        adminNoResume: 403,
      },
    ],
    [
      '{capability=payments.refund}',
      { capability: 'payments.refund' },
      {
        viewer: 403,
        acme: 403,
        acmeNoResume: 403,
        acmeChat: 403,
        refund: 201,
        globex: 403,
        admin: 201,
        adminNoResume: 403,
      },
    ],
  ];
  for (const [name, selector, expected] of RESUMES) {
    it.each(ALL_FLIPPERS)(`resume ${name} as %s`, async (who) => {
      // An operator within scope halts it first, so a refusal is about permission, not "nothing
      // to resume" nor who placed it (an operator lifts only operators' halts, KS-17.5.1).
      const placer = 'capability' in selector ? T.refund : T.acme;
      const h = await send('POST', '/v1/flips', `Bearer ${placer}`, {
        action: 'halt',
        selector,
        reason: 'x',
      });
      expect(h.status).toBe(201);
      const before = (await store.head()).seq;
      const a = await send('POST', '/v1/flips', `Bearer ${T[who]}`, {
        action: 'resume',
        selector,
        reason: 'x',
      });
      expect(a.status, a.body).toBe(expected[who]);
      expect((await store.head()).seq).toBe(a.status === 201 ? before + 1 : before);
    });
  }
});

describe('KS-13.5.5 a token is refused from its expiresAt instant on, on every route', () => {
  it('accepted 1 ms before, refused at and after, with nothing appended', async () => {
    for (const route of ROUTES) {
      clock = EXPIRES_AT - 1;
      const ok = await send(route.method, route.target, `Bearer ${T.expiring}`, route.body?.());
      expect(ok.status, route.name).toBeLessThan(300);
      for (const at of [EXPIRES_AT, EXPIRES_AT + 1, EXPIRES_AT + 86_400_000]) {
        clock = at;
        const before = (await store.head()).seq;
        const a = await send(route.method, route.target, `Bearer ${T.expiring}`, route.body?.());
        expect(a.status, `${route.name} at ${at - EXPIRES_AT} ms after expiry`).toBe(401);
        expect(a.headers['www-authenticate']).toMatch(/^Bearer/);
        expect((await store.head()).seq).toBe(before);
      }
    }
    clock = EXPIRES_AT - 60_000;
  });
});

describe('KS-13.5.2 KS-17.2.1 KS-17.7.4 streams as a worker and the checkpoint, every role', () => {
  const roles: Who[] = [
    'viewer',
    'worker',
    'acme',
    'acmeNoResume',
    'refund',
    'globex',
    'admin',
    'adminNoResume',
  ];
  beforeAll(() => {
    cp.router.add(...checkpointRoutes(store, undefined));
  });
  let streamCounter = 0;
  it.each(roles)(
    'GET /v1/stream?worker= as %s: a worker credential or admin, else 403',
    async (who) => {
      const id = `auth-w-stream-${++streamCounter}`;
      const a = await send('GET', `/v1/stream?worker=${id}`, `Bearer ${T[who]}`);
      const may = who === 'worker' || who === 'admin' || who === 'adminNoResume';
      expect(a.status).toBe(may ? 200 : 403);
      if (!may) expect(JSON.parse(a.body).error.code).toBe('KS_FORBIDDEN');
    },
  );
  it('a worker token streams only as the ids of its binding', async () => {
    const a = await send('GET', '/v1/stream?worker=other-w-1', `Bearer ${T.worker}`);
    expect(a.status).toBe(403);
  });
  it.each(roles)('GET /v1/checkpoint as %s: any role reads the head', async (who) => {
    const a = await send('GET', '/v1/checkpoint', `Bearer ${T[who]}`);
    expect(a.status).toBe(200);
    const head = await store.head();
    expect(JSON.parse(a.body)).toMatchObject({ seq: head.seq, hash: head.hash });
  });
  it.each(MALFORMED)('GET /v1/checkpoint with %s: 401', async (_name, header) => {
    const a = await send('GET', '/v1/checkpoint', header);
    expect(a.status).toBe(401);
    expect(a.headers['www-authenticate']).toMatch(/^Bearer/);
  });
});
