/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
/**
 * KS-17.9.1, KS-17.9.2 over the wire: the "Anonymous admin by default" reproducers. A
 * library caller that forgets `auth` gets no server; a cross-site form post with no (or a form)
 * content type flips nothing; a page of another site whose name resolves to 127.0.0.1 (DNS
 * rebinding) is answered 421 before any token is read.
 */
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import {
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../../src/server/index.js';

const ADMIN = 'ks-admin-token-0123456789ab';
const SPECS: TokenSpec[] = [{ name: 'ada', token: ADMIN, role: 'admin' }];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet = { info() {}, warn() {}, error() {} };

async function server(extra: Partial<ControlPlaneOptions> = {}): Promise<{
  cp: ControlPlane;
  store: MemoryFlipLogStore;
}> {
  const store = new MemoryFlipLogStore();
  const cp = await startControlPlane({
    store,
    port: 0,
    auth: new TokenAuthenticator({ tokens: SPECS }),
    logger: quiet,
    ...extra,
  });
  cleanups.push(() => cp.close());
  return { cp, store };
}

/** One request with whatever headers a browser (or attacker) would send, Host included. */
function send(
  port: number,
  o: { method: string; path: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: o.method, path: o.path, headers: o.headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = text;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

const HALT = JSON.stringify({ action: 'halt', selector: {}, reason: 'cross-site' });

describe('KS-17.9.1 no anonymous admin unless the caller asks for it by name', () => {
  it('startControlPlane without auth refuses to start, naming the option', async () => {
    const store = new MemoryFlipLogStore();
    await expect(
      startControlPlane({ store, port: 0, logger: quiet } as unknown as ControlPlaneOptions),
    ).rejects.toMatchObject({ code: 'KS_INVALID_OPTION', message: /option auth/ });
  });

  it("auth: 'none' given explicitly starts on loopback with a warning saying every caller is an admin", async () => {
    const warnings: string[] = [];
    const { cp } = await server({
      auth: 'none',
      logger: { info() {}, warn: (m) => warnings.push(m), error() {} },
    });
    expect(warnings.join('\n')).toMatch(/every caller is an anonymous admin/);
    const r = await send(cp.port, {
      method: 'POST',
      path: '/v1/flips',
      headers: { host: `127.0.0.1:${cp.port}`, 'content-type': 'application/json' },
      body: HALT,
    });
    expect(r.status).toBe(201);
    expect(r.json.flip.actor).toBe('anonymous');
  });
});

describe('KS-17.9.2 state-changing requests need application/json', () => {
  it.each([
    ['none', undefined],
    ['a form', 'application/x-www-form-urlencoded'],
    ['text/plain (a simple fetch)', 'text/plain'],
    ['multipart', 'multipart/form-data; boundary=x'],
  ])(
    'a POST with %s as its content type is 415 and appends nothing, even with an admin token',
    async (_, type) => {
      const { cp, store } = await server();
      const headers: Record<string, string> = {
        host: `127.0.0.1:${cp.port}`,
        authorization: `Bearer ${ADMIN}`,
      };
      if (type !== undefined) headers['content-type'] = type;
      const r = await send(cp.port, { method: 'POST', path: '/v1/flips', headers, body: HALT });
      expect(r.status).toBe(415);
      expect(r.json.error.message).toMatch(/content-type: application\/json/);
      expect((await store.head()).seq).toBe(0);
    },
  );

  it("the issue's reproducer: with auth 'none', a cross-site POST with no content type neither halts nor resumes", async () => {
    const { cp, store } = await server({ auth: 'none' });
    for (const body of [HALT, JSON.stringify({ action: 'resume', selector: {} })]) {
      const r = await send(cp.port, {
        method: 'POST',
        path: '/v1/flips',
        headers: { host: `127.0.0.1:${cp.port}` },
        body,
      });
      expect(r.status).toBe(415);
    }
    expect((await store.head()).seq).toBe(0);
  });

  it('application/json with a charset, and +json types, are accepted', async () => {
    const { cp } = await server();
    const r = await send(cp.port, {
      method: 'POST',
      path: '/v1/flips',
      headers: {
        host: `localhost:${cp.port}`,
        authorization: `Bearer ${ADMIN}`,
        'content-type': 'application/json; charset=utf-8',
      },
      body: HALT,
    });
    expect(r.status).toBe(201);
  });
});

describe('KS-17.9.2 the Host header must name this control plane (DNS rebinding)', () => {
  it('a request naming another host is 421 before any token is read, and appends nothing', async () => {
    const { cp, store } = await server();
    for (const host of ['evil.example', `evil.example:${cp.port}`, 'localhost.evil.example']) {
      const r = await send(cp.port, {
        method: 'POST',
        path: '/v1/flips',
        headers: {
          host,
          authorization: `Bearer ${ADMIN}`,
          'content-type': 'application/json',
        },
        body: HALT,
      });
      expect(r.status, host).toBe(421);
      expect(r.json.error.code).toBe('KS_FORBIDDEN');
    }
    // A read too: a rebinding page must not read the state either.
    const read = await send(cp.port, {
      method: 'GET',
      path: '/v1/state',
      headers: { host: 'evil.example', authorization: `Bearer ${ADMIN}` },
    });
    expect(read.status).toBe(421);
    // Before the token: a bad token under a foreign name is 421, not 401.
    const bad = await send(cp.port, {
      method: 'GET',
      path: '/v1/state',
      headers: { host: 'evil.example', authorization: 'Bearer nope-nope-nope-nope' },
    });
    expect(bad.status).toBe(421);
    expect((await store.head()).seq).toBe(0);
  });

  it('the bound address, localhost and loopback literals on loopback, and configured names are accepted', async () => {
    const { cp } = await server({ allowedHosts: ['killswitch.internal', 'KS.Example.COM'] });
    for (const host of [
      `127.0.0.1:${cp.port}`,
      '127.0.0.1',
      `localhost:${cp.port}`,
      `[::1]:${cp.port}`,
      'killswitch.internal',
      `ks.example.com:${cp.port}`,
      'ks.example.com.',
    ]) {
      const r = await send(cp.port, {
        method: 'GET',
        path: '/v1/state',
        headers: { host, authorization: `Bearer ${ADMIN}` },
      });
      expect(r.status, host).toBe(200);
    }
  });

  it('allowedHosts refuses entries that are not host names', async () => {
    for (const bad of ['*', 'a b', 'http://x', 'x:80']) {
      await expect(server({ allowedHosts: [bad] })).rejects.toMatchObject({
        code: 'KS_INVALID_OPTION',
        message: /allowedHosts/,
      });
    }
  });
});
