import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import {
  TokenAuthenticator,
  authorize,
  sha256Token,
  isLoopbackHost,
  loadTokens,
  type Principal,
} from '../../src/auth/index.js';
import { startControlPlane } from '../../src/server/index.js';
import { readClock } from '../fixtures/clock.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ks-auth-'));
  dirs.push(d);
  return d;
}

describe('KS-5.2.6 tokens are checked by hash; unknown, malformed and expired tokens are 401', () => {
  let now = Date.parse('2030-01-01T00:00:00.000Z');
  const auth = new TokenAuthenticator({
    clock: readClock(() => now),
    tokens: [
      { name: 'plain', token: 'plain-token-0123456789', role: 'viewer' },
      { name: 'hashed', sha256: sha256Token('hashed-token-0123456789'), role: 'admin' },
      {
        name: 'soon',
        token: 'soon-token-0123456789ab',
        role: 'viewer',
        expiresAt: '2030-01-01T00:00:01.000Z',
      },
    ],
  });

  it('accepts a plain and a hashed token', () => {
    expect(auth.authenticate('Bearer plain-token-0123456789').name).toBe('plain');
    expect(auth.authenticate('bearer hashed-token-0123456789')).toMatchObject({
      name: 'hashed',
      role: 'admin',
      resume: true,
    });
  });

  it.each([
    undefined,
    '',
    'Basic abc',
    'Bearer',
    'Bearer wrong-token-0123456789',
    'Bearer plain-token-0123456789 x',
  ])('refuses %j with KS_UNAUTHORIZED', (h) => {
    expect(() => auth.authenticate(h)).toThrow(
      expect.objectContaining({ code: 'KS_UNAUTHORIZED' }),
    );
  });

  it('refuses a token once it expired', () => {
    expect(auth.authenticate('Bearer soon-token-0123456789ab').name).toBe('soon');
    now += 1000;
    expect(() => auth.authenticate('Bearer soon-token-0123456789ab')).toThrow(/expired/);
  });

  it('refuses bad token configs at construction', () => {
    const bad = [
      [{ name: 'a', token: 'short', role: 'viewer' }],
      [{ name: 'a', role: 'viewer' }],
      [{ name: 'a', token: 'x'.repeat(20), sha256: sha256Token('y'), role: 'viewer' }],
      [{ name: 'a', token: 'x'.repeat(20), role: 'operator' }],
      [{ name: 'a', token: 'x'.repeat(20), role: 'operator', scopes: [{}] }],
      [{ name: 'a', token: 'x'.repeat(20), role: 'viewer', resume: true }],
      [{ name: 'a', token: 'x'.repeat(20), role: 'root' }],
      [
        { name: 'a', token: 'x'.repeat(20), role: 'viewer' },
        { name: 'a', token: 'y'.repeat(20), role: 'viewer' },
      ],
      [
        { name: 'a', token: 'x'.repeat(20), role: 'viewer' },
        { name: 'b', token: 'x'.repeat(20), role: 'admin' },
      ],
    ];
    for (const tokens of bad) {
      expect(() => new TokenAuthenticator({ tokens: tokens as never })).toThrow(
        expect.objectContaining({ code: 'KS_INVALID_OPTION' }),
      );
    }
  });
});

describe('KS-5.2.3 operators flip within their scopes; resume is its own permission', () => {
  const op: Principal = {
    name: 'o',
    role: 'operator',
    scopes: [{ tenant: 'acme' }, { capability: 'refund' }],
    resume: false,
  };
  it.each([
    [{ tenant: 'acme' }, true],
    [{ tenant: 'acme', runId: 'r1' }, true],
    [{ capability: 'refund', tenant: 'other' }, true],
    [{ tenant: 'other' }, false],
    [{}, false],
    [{ feature: 'f' }, false],
  ])('halt %j allowed: %s', (selector, ok) => {
    const f = () => authorize(op, { kind: 'halt', selector });
    if (ok) expect(f).not.toThrow();
    else expect(f).toThrow(expect.objectContaining({ code: 'KS_FORBIDDEN' }));
  });
  it('resume needs the permission even within scope', () => {
    expect(() => authorize(op, { kind: 'resume', selector: { tenant: 'acme' } })).toThrow(
      /resume permission/,
    );
    expect(() =>
      authorize({ ...op, resume: true }, { kind: 'resume', selector: { tenant: 'acme' } }),
    ).not.toThrow();
  });
});

describe('KS-5.2.5 tokens come from a file or the environment', () => {
  it('reads <dataDir>/tokens.json, KILLSWITCH_TOKENS and KILLSWITCH_ADMIN_TOKEN together', async () => {
    const d = await tmp();
    await writeFile(
      join(d, 'tokens.json'),
      JSON.stringify({ tokens: [{ name: 'f', token: 'file-token-0123456789', role: 'viewer' }] }),
      { mode: 0o600 },
    );
    const r = await loadTokens({
      dataDir: d,
      env: {
        KILLSWITCH_TOKENS: JSON.stringify([
          { name: 'e', token: 'env-token-0123456789', role: 'operator', scopes: [{ tenant: 't' }] },
        ]),
        KILLSWITCH_ADMIN_TOKEN: 'admin-env-token-0123456789',
      },
    });
    expect(r.configured).toBe(true);
    expect(r.tokens.map((t) => t.name)).toEqual(['f', 'e', 'admin']);
    expect(r.generatedTokenPath).toBeUndefined();
    const auth = new TokenAuthenticator({ tokens: r.tokens });
    expect(auth.authenticate('Bearer admin-env-token-0123456789').role).toBe('admin');
  });

  it('a malformed token file fails with the issues; an explicit missing file fails', async () => {
    const d = await tmp();
    await writeFile(
      join(d, 'bad.json'),
      JSON.stringify({ tokens: [{ name: 'x', role: 'viewer' }] }),
    );
    await expect(
      loadTokens({ dataDir: d, env: {}, tokensFile: join(d, 'bad.json') }),
    ).rejects.toMatchObject({
      code: 'KS_INVALID_INPUT',
    });
    await expect(
      loadTokens({ dataDir: d, env: {}, tokensFile: join(d, 'none.json') }),
    ).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
    });
  });
});

describe('KS-5.2.7 with no tokens an admin token is generated into the data directory (0600)', () => {
  it('creates it once and reuses it', async () => {
    const d = join(await tmp(), 'data');
    const a = await loadTokens({ dataDir: d, env: {} });
    expect(a).toMatchObject({
      configured: false,
      created: true,
      generatedTokenPath: join(d, 'admin.token'),
    });
    expect((await stat(join(d, 'admin.token'))).mode & 0o777).toBe(0o600);
    const b = await loadTokens({ dataDir: d, env: {} });
    expect(b.created).toBe(false);
    expect(b.tokens[0]!.token).toBe(a.tokens[0]!.token);
    expect((await readFile(join(d, 'admin.token'), 'utf8')).trim()).toBe(a.tokens[0]!.token);
  });

  it('refuses a generated token file others can read', async () => {
    const d = await tmp();
    await loadTokens({ dataDir: d, env: {} });
    await chmod(join(d, 'admin.token'), 0o644);
    await expect(loadTokens({ dataDir: d, env: {} })).rejects.toThrow(/chmod 600/);
  });
});

describe('KS-5.2.8 a non-loopback bind without tokens is refused', () => {
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1'])
      expect(isLoopbackHost(h)).toBe(false);
  });

  it("startControlPlane refuses auth 'none' or an empty token list on 0.0.0.0", async () => {
    const store = new MemoryFlipLogStore();
    await expect(
      startControlPlane({ store, host: '0.0.0.0', port: 0, auth: 'none' }),
    ).rejects.toMatchObject({
      code: 'KS_INVALID_OPTION',
    });
    await expect(
      startControlPlane({
        store,
        host: '0.0.0.0',
        port: 0,
        auth: new TokenAuthenticator({ tokens: [] }),
      }),
    ).rejects.toMatchObject({ code: 'KS_INVALID_OPTION' });
  });
});
