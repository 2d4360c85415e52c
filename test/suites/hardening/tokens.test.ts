/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
/**
 * KS-17.2 .. KS-17.5 over the wire where the control plane already applies them (who may act as a
 * worker), and on the auth module where the control plane will (token reload, hashed tokens, read
 * scopes, who may lift a halt).
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import {
  TokenAuthenticator,
  authorize,
  createToken,
  hashToken,
  loadTokens,
  mayRead,
  readsAll,
  sha256Token,
  tokenId,
  watchTokenFile,
  type Principal,
  type TokenSpec,
} from '../../../src/auth/index.js';
import { startControlPlane, type ControlPlane } from '../../../src/server/index.js';
import { readClock } from '../../fixtures/clock.js';

const root = await mkdtemp(join(tmpdir(), 'ks-tokens-'));
let n = 0;
const nextDir = () => join(root, `d${++n}`);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VIEWER = 'ks-viewer-token-0123456789';
const ADMIN = 'ks-admin-token-0123456789ab';
const FLEET = createToken();

async function server(tokens: TokenSpec[]): Promise<ControlPlane> {
  const cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    auth: new TokenAuthenticator({ tokens }),
    logger: { info() {}, warn() {}, error() {} },
  });
  cleanups.push(() => cp.close());
  return cp;
}

async function post(cp: ControlPlane, path: string, token: string, body: unknown) {
  const res = await fetch(cp.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

describe('KS-17.2.1 only worker credentials acknowledge (issue 15: "Fooled")', () => {
  const specs: TokenSpec[] = [
    { name: 'dashboard', token: VIEWER, role: 'viewer' },
    { name: 'fleet', hash: hashToken(FLEET), role: 'worker', workers: ['w-*'] },
    { name: 'ada', token: ADMIN, role: 'admin' },
  ];

  it('a viewer token posting acknowledgements for 1,000 made-up workers is refused whole; none is tracked', async () => {
    const cp = await server(specs);
    const acks = Array.from({ length: 1_000 }, (_, i) => ({
      workerId: `ghost-${i}`,
      seq: 2 ** 40,
    }));
    const r = await post(cp, '/v1/acks', VIEWER, { acks });
    expect(r.status).toBe(403);
    expect(r.json.error.message).toMatch(/'dashboard' \(viewer\) may not act as a worker/);
    const flip = await post(cp, '/v1/flips', ADMIN, {
      action: 'halt',
      selector: {},
      reason: 'incident',
    });
    expect(flip.json.fleet).toMatchObject({ applied: 0 });
    expect(cp.tracker.workers()).toEqual([]);
  });

  it('a viewer token cannot stream as a worker (so it cannot pose as a worker on a red release)', async () => {
    const cp = await server(specs);
    const res = await fetch(`${cp.url}/v1/stream?worker=w-1&release=red`, {
      headers: { authorization: `Bearer ${VIEWER}` },
    });
    expect(res.status).toBe(403);
    await res.body?.cancel();
    expect(cp.tracker.workers()).toEqual([]);
  });

  it('a hashed worker token acknowledges as the ids of its binding only', async () => {
    const cp = await server(specs);
    expect((await post(cp, '/v1/acks', FLEET, { workerId: 'w-1', seq: 0 })).status).toBe(200);
    const other = await post(cp, '/v1/acks', FLEET, { workerId: 'db-1', seq: 0 });
    expect(other.status).toBe(403);
    expect(other.json.error.message).toMatch(/may not act as worker 'db-1' \(allowed: w-\*\)/);
    expect(cp.tracker.workers().map((w) => w.id)).toEqual(['w-1']);
  });
});

describe('KS-17.3.1 the token set is replaced while serving; the token file is watched', () => {
  const A = 'token-a-0123456789abcdef';
  const B = 'token-b-0123456789abcdef';

  it('a removed token stops authenticating at once and its principal is no longer current; unchanged ones stay', () => {
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'a', token: A, role: 'viewer' },
        { name: 'b', token: B, role: 'viewer' },
      ],
    });
    const a = auth.authenticate(`Bearer ${A}`);
    const b = auth.authenticate(`Bearer ${B}`);
    let told = 0;
    auth.onChange(() => told++);
    auth.replace([{ name: 'b', token: B, role: 'viewer' }]);
    expect(told).toBe(1);
    expect(() => auth.authenticate(`Bearer ${A}`)).toThrow(/unknown token/);
    expect(auth.isCurrent(a)).toBe(false);
    expect(auth.isCurrent(b)).toBe(true);
    expect(auth.authenticate(`Bearer ${B}`)).toBe(b);
    // Changing a token's settings is a new principal: the old one is not current.
    auth.replace([{ name: 'b', token: B, role: 'operator', scopes: [{ tenant: 'x' }] }]);
    expect(auth.isCurrent(b)).toBe(false);
    expect(auth.authenticate(`Bearer ${B}`).role).toBe('operator');
  });

  it('a bad set is refused whole and the tokens in force are kept', () => {
    const auth = new TokenAuthenticator({ tokens: [{ name: 'a', token: A, role: 'viewer' }] });
    expect(() => auth.replace([{ name: 'a', token: 'short', role: 'viewer' }])).toThrow(
      expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
    );
    expect(auth.authenticate(`Bearer ${A}`).name).toBe('a');
  });

  it('what a connection remembers of its token is void after a reload, and expiry is checked on every request', () => {
    let now = 1_000;
    const auth = new TokenAuthenticator({
      clock: readClock(() => now),
      tokens: [
        { name: 'a', token: A, role: 'admin' },
        { name: 'b', token: B, role: 'viewer', expiresAt: new Date(2_000).toISOString() },
      ],
    });
    const conn = {};
    const other = {};
    const a = auth.authenticateOn(conn, `Bearer ${A}`);
    expect(auth.authenticateOn(conn, `Bearer ${A}`)).toBe(a);
    // Another header on the same connection is authenticated as itself, not as the last one.
    expect(auth.authenticateOn(conn, `Bearer ${B}`).name).toBe('b');
    expect(() => auth.authenticateOn(conn, 'Bearer token-c-0123456789abcdef')).toThrow(
      /unknown token/,
    );
    expect(() => auth.authenticateOn(conn, undefined)).toThrow(/missing bearer token/);
    expect(auth.authenticateOn(conn, `Bearer ${A}`)).toBe(a);
    // Removed: refused on the connection that used it a moment ago.
    auth.replace([
      { name: 'b', token: B, role: 'viewer', expiresAt: new Date(2_000).toISOString() },
    ]);
    expect(() => auth.authenticateOn(conn, `Bearer ${A}`)).toThrow(/unknown token/);
    // Changed (a viewer now): the new principal, not the remembered one.
    auth.replace([
      { name: 'a', token: A, role: 'viewer' },
      { name: 'b', token: B, role: 'viewer', expiresAt: new Date(2_000).toISOString() },
    ]);
    expect(auth.authenticateOn(other, `Bearer ${A}`).role).toBe('viewer');
    expect(auth.authenticateOn(other, `Bearer ${B}`).name).toBe('b');
    now = 2_000;
    expect(() => auth.authenticateOn(other, `Bearer ${B}`)).toThrow(/expired/);
  });

  it('a revoked or demoted token is refused on a keep-alive connection it already used (over the wire)', async () => {
    const auth = new TokenAuthenticator({ tokens: [{ name: 'a', token: A, role: 'admin' }] });
    const cp = await startControlPlane({
      store: new MemoryFlipLogStore(),
      port: 0,
      auth,
      logger: { info() {}, warn() {}, error() {} },
    });
    cleanups.push(() => cp.close());
    const { Agent, request } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const ports = new Set<number>();
    let tenant = 0;
    const flip = () =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({
          action: 'halt',
          selector: { tenant: `t${tenant++}` },
          reason: 'keep-alive',
        });
        const req = request(
          `${cp.url}/v1/flips`,
          {
            method: 'POST',
            agent,
            headers: {
              authorization: `Bearer ${A}`,
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
            },
          },
          (res) => {
            ports.add(res.socket.localPort!);
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    expect(await flip()).toBe(201);
    expect(await flip()).toBe(201);
    // Demoted to a viewer: the same connection's next flip is forbidden.
    auth.replace([{ name: 'a', token: A, role: 'viewer' }]);
    expect(await flip()).toBe(403);
    auth.replace([{ name: 'a', token: A, role: 'admin' }]);
    expect(await flip()).toBe(201);
    // Revoked: refused at once on the connection it keeps open.
    auth.replace([{ name: 'b', token: B, role: 'admin' }]);
    expect(await flip()).toBe(401);
    // One connection throughout (the agent keeps it open; a 401/403 answer does not close it).
    expect(ports.size).toBe(1);
  });

  it('an expired principal is no longer current', () => {
    let now = 1_000;
    const auth = new TokenAuthenticator({
      clock: readClock(() => now),
      tokens: [{ name: 'a', token: A, role: 'viewer', expiresAt: new Date(2_000).toISOString() }],
    });
    const a = auth.authenticate(`Bearer ${A}`);
    expect(a.expiresAt).toBe(2_000);
    expect(auth.isCurrent(a)).toBe(true);
    now = 2_000;
    expect(auth.isCurrent(a)).toBe(false);
  });

  async function tokenFile(tokens: TokenSpec[], mode = 0o600): Promise<string> {
    const dir = nextDir();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'tokens.json');
    await writeFile(file, JSON.stringify({ tokens }), { mode });
    await chmod(file, mode);
    return file;
  }

  async function until(check: () => boolean, ms = 5_000): Promise<void> {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('reloads when the file is rewritten in place or replaced by rename, and keeps the tokens in force when it breaks', async () => {
    const file = await tokenFile([
      { name: 'a', token: A, role: 'viewer' },
      { name: 'b', token: B, role: 'viewer' },
    ]);
    const loaded = await loadTokens({ dataDir: root, tokensFile: file, env: {} });
    const auth = new TokenAuthenticator({ tokens: loaded.tokens });
    const errors: string[] = [];
    const w = watchTokenFile({
      auth,
      file,
      sighup: false,
      debounceMs: 20,
      load: async () => (await loadTokens({ dataDir: root, tokensFile: file, env: {} })).tokens,
      onError: (e) => errors.push(e.message),
    });
    cleanups.push(() => w.close());
    await new Promise((r) => setTimeout(r, 50));
    await writeFile(file, JSON.stringify({ tokens: [{ name: 'b', token: B, role: 'viewer' }] }));
    await until(() => auth.size === 1);
    expect(() => auth.authenticate(`Bearer ${A}`)).toThrow(/unknown token/);
    // Replaced by rename, as editors and Kubernetes do.
    const { rename } = await import('node:fs/promises');
    await writeFile(`${file}.tmp`, JSON.stringify([{ name: 'a', token: A, role: 'admin' }]), {
      mode: 0o600,
    });
    await rename(`${file}.tmp`, file);
    await until(() => auth.roleOf('a') === 'admin');
    expect(() => auth.authenticate(`Bearer ${B}`)).toThrow(/unknown token/);
    // A broken file: refused, logged, the admin token still works.
    await writeFile(file, '{ not json');
    await until(() => errors.length > 0);
    expect(errors[0]).toMatch(/not JSON/);
    expect(auth.authenticate(`Bearer ${A}`).role).toBe('admin');
  });

  it('reloads on SIGHUP', async () => {
    const file = await tokenFile([{ name: 'a', token: A, role: 'viewer' }]);
    const auth = new TokenAuthenticator({ tokens: [{ name: 'a', token: A, role: 'viewer' }] });
    const reloads: number[] = [];
    const w = watchTokenFile({
      auth,
      file,
      // No change events or polls within the test: only the signal can reload.
      debounceMs: 600_000,
      pollMs: 0,
      load: async () => (await loadTokens({ dataDir: root, tokensFile: file, env: {} })).tokens,
      onReload: (count) => reloads.push(count),
    });
    cleanups.push(() => w.close());
    await writeFile(file, JSON.stringify([{ name: 'b', token: B, role: 'viewer' }]));
    process.kill(process.pid, 'SIGHUP');
    await until(() => reloads.length > 0);
    expect(() => auth.authenticate(`Bearer ${A}`)).toThrow(/unknown token/);
    expect(auth.authenticate(`Bearer ${B}`).name).toBe('b');
  });
});

describe('KS-17.3.2 a token file is as private as the secrets in it', () => {
  async function fileWith(tokens: TokenSpec[], mode: number): Promise<string> {
    const dir = nextDir();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'tokens.json');
    await writeFile(file, JSON.stringify(tokens));
    await chmod(file, mode);
    return file;
  }
  const plain: TokenSpec = { name: 'p', token: 'plain-token-0123456789', role: 'admin' };
  const hashed: TokenSpec = { name: 'h', hash: hashToken(createToken()), role: 'admin' };
  const legacy: TokenSpec = { name: 'l', sha256: sha256Token('x'.repeat(20)), role: 'viewer' };

  it.each([
    [
      'plain tokens readable by others (0644)',
      [plain],
      0o644,
      /readable by group or others \(mode 644\) and holds secrets \(p/,
    ],
    ['plain tokens readable by the group (0640)', [plain], 0o640, /readable by group or others/],
    ['unsalted sha256 entries readable by others', [legacy], 0o644, /holds secrets \(l/],
    ['hashed entries writable by the group (0664)', [hashed], 0o664, /writable by group or others/],
    ['hashed entries writable by others (0646)', [hashed], 0o646, /writable by group or others/],
  ])('refuses %s', async (_what, tokens, mode, message) => {
    const file = await fileWith(tokens, mode);
    await expect(loadTokens({ dataDir: root, tokensFile: file, env: {} })).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
      message: expect.stringMatching(message),
    });
  });

  it('accepts a 0600 file of plain tokens and a 0644 file of salted hashes only', async () => {
    const a = await loadTokens({
      dataDir: root,
      tokensFile: await fileWith([plain], 0o600),
      env: {},
    });
    expect(a.tokens.map((t) => t.name)).toEqual(['p']);
    const b = await loadTokens({
      dataDir: root,
      tokensFile: await fileWith([hashed], 0o644),
      env: {},
    });
    expect(b.tokens.map((t) => t.name)).toEqual(['h']);
    expect(b.file).toBeDefined();
  });
});

describe('KS-17.3.3 hashed entries: salted scrypt, found by the token id', () => {
  it('createToken makes ks_<id>_<secret>; hashToken salts (two hashes of one token differ) and both verify', async () => {
    const token = createToken();
    expect(token).toMatch(/^ks_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    expect(tokenId(token)).toBe(token.slice(3, 15));
    const [h1, h2] = [hashToken(token), hashToken(token)];
    expect(h1).not.toBe(h2);
    expect(h1).toMatch(/^\$scrypt\$id=[a-z0-9]{12},ln=12,r=8,p=1\$/);
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'one', hash: h1, role: 'viewer' },
        { name: 'two', hash: hashToken(createToken()), role: 'viewer' },
      ],
    });
    expect((await auth.authenticateAsync(`Bearer ${token}`)).name).toBe('one');
    expect(auth.authenticate(`Bearer ${token}`).name).toBe('one');
  });

  it('a wrong secret under a known id, an unknown id and a token of another form are 401', async () => {
    const token = createToken();
    const auth = new TokenAuthenticator({
      tokens: [{ name: 'one', hash: hashToken(token), role: 'viewer' }],
    });
    const wrongSecret = `${token.slice(0, 16)}${'A'.repeat(43)}`;
    for (const t of [wrongSecret, createToken(), 'some-other-token-0123456789']) {
      await expect(auth.authenticateAsync(`Bearer ${t}`)).rejects.toMatchObject({
        code: 'KS_UNAUTHORIZED',
      });
      expect(() => auth.authenticate(`Bearer ${t}`)).toThrow(/unknown token/);
    }
  });

  it('concurrent first checks of one token share the work and all succeed; a reload keeps it working', async () => {
    const token = createToken();
    const spec: TokenSpec = { name: 'one', hash: hashToken(token), role: 'viewer' };
    const auth = new TokenAuthenticator({ tokens: [spec] });
    const all = await Promise.all(
      Array.from({ length: 20 }, () => auth.authenticateAsync(`Bearer ${token}`)),
    );
    expect(new Set(all).size).toBe(1);
    auth.replace([spec, { name: 'x', token: 'x-token-0123456789abc', role: 'viewer' }]);
    expect(auth.isCurrent(all[0]!)).toBe(true);
    expect(auth.authenticate(`Bearer ${token}`)).toBe(all[0]);
  });

  it('authenticateOnAsync: a first-seen hashed token is checked off the event loop, a known one at once; a reload meanwhile is not remembered', async () => {
    const token = createToken();
    const spec: TokenSpec = { name: 'one', hash: hashToken(token), role: 'viewer' };
    const auth = new TokenAuthenticator({ tokens: [spec] });
    const conn = {};
    const first = auth.authenticateOnAsync(conn, `Bearer ${token}`);
    expect(first).toBeInstanceOf(Promise);
    const p = await first;
    expect(p.name).toBe('one');
    // Remembered by the connection and by the fingerprint: no promise from now on.
    expect(auth.authenticateOnAsync(conn, `Bearer ${token}`)).toBe(p);
    expect(auth.authenticateOnAsync({}, `Bearer ${token}`)).toBe(p);
    const wrong = `${token.slice(0, 16)}${'A'.repeat(43)}`;
    const refused = auth.authenticateOnAsync(conn, `Bearer ${wrong}`);
    expect(refused).toBeInstanceOf(Promise);
    await expect(refused).rejects.toMatchObject({ code: 'KS_UNAUTHORIZED' });
    expect(() => auth.authenticateOnAsync(conn, undefined)).toThrow(/missing bearer token/);
    // A token set replaced while scrypt runs: the answer is not kept for the connection.
    const other = createToken();
    const spec2: TokenSpec = { name: 'two', hash: hashToken(other), role: 'viewer' };
    auth.replace([spec, spec2]);
    const conn2 = {};
    const during = auth.authenticateOnAsync(conn2, `Bearer ${other}`);
    auth.replace([spec]); // 'two' revoked while its first check runs
    await expect(during).rejects.toMatchObject({ code: 'KS_UNAUTHORIZED' });
    await expect(
      (async () => auth.authenticateOnAsync(conn2, `Bearer ${other}`))(),
    ).rejects.toThrow(/unknown token/);
  });

  it('the control plane checks first-seen hashed tokens on the thread pool: made-up secrets under a known id do not hold up other requests', async () => {
    const cp = await server([
      { name: 'fleet', hash: hashToken(FLEET), role: 'viewer' },
      { name: 'viewer', token: VIEWER, role: 'viewer' },
    ]);
    const order: string[] = [];
    const get = (label: string, token: string) =>
      fetch(`${cp.url}/v1/flips`, { headers: { authorization: `Bearer ${token}` } }).then(
        async (r) => {
          await r.arrayBuffer();
          order.push(label);
          return r.status;
        },
      );
    // Each made-up secret is a new fingerprint, so each costs a scrypt (ln=12).
    const forged = Array.from({ length: 8 }, (_, i) =>
      get(`forged${i}`, `${FLEET.slice(0, 16)}${String(i).repeat(43)}`),
    );
    await new Promise((r) => setTimeout(r, 5));
    const viewer = await get('viewer', VIEWER);
    expect(viewer).toBe(200);
    expect(await Promise.all(forged)).toEqual(Array(8).fill(401));
    // On the event loop the 8 checks ran one after another ahead of the viewer's request.
    expect(order.indexOf('viewer')).toBeLessThan(order.length - 1);
  });

  it('refuses a hash with a hostile cost, a token given twice in two forms, and hashing a token without an id', () => {
    const token = createToken();
    const hostile = hashToken(token).replace('ln=12', 'ln=30');
    expect(
      () => new TokenAuthenticator({ tokens: [{ name: 'a', hash: hostile, role: 'viewer' }] }),
    ).toThrow(/KS_INVALID_OPTION|valid token specs/);
    expect(
      () =>
        new TokenAuthenticator({
          tokens: [
            { name: 'a', hash: hashToken(token), role: 'viewer' },
            { name: 'b', token, role: 'admin' },
          ],
        }),
    ).toThrow(/token reused/);
    expect(() => hashToken('not-in-the-ks-form-0123456789')).toThrow(/ks_<id>_<secret>/);
  });

  it('the generated admin token has the ks_<id>_<secret> form, so it can be hashed', async () => {
    const dir = nextDir();
    const r = await loadTokens({ dataDir: dir, env: {} });
    expect(r.created).toBe(true);
    expect(tokenId(r.tokens[0]!.token!)).toBeDefined();
  });
});

describe('KS-17.3.4 unsalted sha256 entries are accepted with a warning naming them', () => {
  it('warns at load', async () => {
    const r = await loadTokens({
      dataDir: nextDir(),
      env: {
        KILLSWITCH_TOKENS: JSON.stringify([
          { name: 'old-ci', sha256: sha256Token('old-ci-token-0123456789'), role: 'viewer' },
        ]),
      },
    });
    expect(r.warnings.join('\n')).toMatch(/old-ci use the deprecated unsalted sha256 field/);
    const auth = new TokenAuthenticator({ tokens: r.tokens });
    expect(auth.authenticate('Bearer old-ci-token-0123456789').name).toBe('old-ci');
  });
});

describe('KS-17.4.1 read scopes', () => {
  const p = (role: Principal['role'], scopes: Principal['scopes'] = []): Principal => ({
    name: role,
    role,
    scopes,
    resume: false,
  });
  const acmeOp = p('operator', [{ tenant: 'acme' }]);
  it.each([
    [{ tenant: 'acme' }, true],
    [{ tenant: 'acme', capability: 'refund' }, true],
    [{}, true],
    [{ capability: 'refund' }, true],
    [{ runId: 'r1' }, true],
    [{ tenant: 'globex' }, false],
    [{ tenant: 'globex', capability: 'refund' }, false],
  ])('an acme operator reads %j: %s', (selector, ok) => {
    expect(mayRead(acmeOp, selector)).toBe(ok);
  });
  it('admins, workers and unscoped viewers read everything; scoped viewers only their scopes', () => {
    expect(readsAll(p('admin'))).toBe(true);
    expect(readsAll(p('worker'))).toBe(true);
    expect(readsAll(p('viewer'))).toBe(true);
    expect(readsAll(acmeOp)).toBe(false);
    const scopedViewer = p('viewer', [{ tenant: 'acme' }]);
    expect(readsAll(scopedViewer)).toBe(false);
    expect(mayRead(scopedViewer, { tenant: 'globex' })).toBe(false);
    expect(mayRead(scopedViewer, { tenant: 'acme' })).toBe(true);
  });
  it('viewers may take scopes; workers and admins may not', () => {
    const base = { name: 'x', token: 'x-token-0123456789abcdef' } as const;
    expect(
      () =>
        new TokenAuthenticator({
          tokens: [{ ...base, role: 'viewer', scopes: [{ tenant: 'a' }] }],
        }),
    ).not.toThrow();
    for (const role of ['worker', 'admin'] as const) {
      expect(
        () =>
          new TokenAuthenticator({
            tokens: [{ ...base, role, scopes: [{ tenant: 'a' }], workers: ['w-1'] }],
          }),
      ).toThrow(/valid token specs/);
    }
  });
});

describe('KS-17.5.1 an operator does not lift an admin’s halt', () => {
  const op: Principal = {
    name: 'otto',
    role: 'operator',
    scopes: [{ tenant: 'acme' }],
    resume: true,
  };
  const resume = (actor: string, actorRole: Principal['role'] | undefined) => () =>
    authorize(op, {
      kind: 'resume',
      selector: { tenant: 'acme' },
      halt: { actor, actorRole, seq: 7 },
    });
  it('refuses a halt placed by an admin, naming it', () => {
    expect(resume('ada', 'admin')).toThrow(/may not lift the halt #7 placed by admin 'ada'/);
  });
  it('refuses a halt whose actor no current token names', () => {
    expect(resume('gone', undefined)).toThrow(/'gone', which no current token names/);
  });
  it('lifts its own halt and another operator’s', () => {
    expect(resume('otto', 'operator')).not.toThrow();
    expect(resume('olga', 'operator')).not.toThrow();
  });
  it('an admin lifts any halt', () => {
    const ada: Principal = { name: 'ada', role: 'admin', scopes: [], resume: true };
    expect(() =>
      authorize(ada, { kind: 'resume', selector: {}, halt: { actor: 'x', actorRole: undefined } }),
    ).not.toThrow();
  });
});
