import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { CONSOLE_CSP, mountConsole } from '../../src/console/index.js';
import { CONSOLE_CSS, CONSOLE_HTML } from '../../src/console/console-page.js';
import { CONSOLE_SCRIPT } from '../../src/console/console-script.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';

const VIEWER = 'routes-viewer-token-0123456789';
const ADMIN = 'routes-admin-token-0123456789';
let cp: ControlPlane | undefined;

afterEach(async () => {
  await cp?.close();
  cp = undefined;
});

async function start(): Promise<ControlPlane> {
  cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    auth: new TokenAuthenticator({
      tokens: [
        { name: 'vera', token: VIEWER, role: 'viewer' },
        { name: 'ada', token: ADMIN, role: 'admin' },
      ],
    }),
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  mountConsole(cp);
  return cp;
}

describe('KS-11.1.1 the console is static, self-contained and served with a strict CSP', () => {
  it('serves the page, script and stylesheet without a token, each with the security headers', async () => {
    await start();
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/console/app.js', 'text/javascript'],
      ['/console/app.css', 'text/css'],
    ] as const) {
      const res = await fetch(cp!.url + path);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(new RegExp(`^${type}`));
      expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      const etag = res.headers.get('etag')!;
      await res.arrayBuffer();
      const again = await fetch(cp!.url + path, { headers: { 'if-none-match': etag } });
      expect(again.status).toBe(304);
    }
    expect(CONSOLE_CSP).not.toMatch(/unsafe|\*|https?:/);
  });

  it('references nothing outside the server, holds no inline script or handler, and builds the DOM without markup strings', () => {
    for (const text of [CONSOLE_HTML, CONSOLE_CSS, CONSOLE_SCRIPT]) {
      expect(text).not.toMatch(/https?:\/\//);
      expect(text).not.toMatch(/@import|url\(/);
    }
    // The only <script> is the external one; no on* attributes, no inline styles.
    expect(CONSOLE_HTML.match(/<script[^>]*>/g)).toEqual(['<script src="/console/app.js" defer>']);
    expect(CONSOLE_HTML).not.toMatch(/\son[a-z]+=|style=/);
    // KS-11.1.3 text only: no innerHTML/outerHTML/insertAdjacentHTML/document.write/eval.
    expect(CONSOLE_SCRIPT).not.toMatch(
      /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/,
    );
    // KS-11.1.2 the token never goes into a URL or the page.
    expect(CONSOLE_SCRIPT).not.toMatch(/[?&]token=|EventSource/);
    expect(() => new Function(CONSOLE_SCRIPT)).not.toThrow();
  });
});

describe('KS-11.1.6 GET /v1/flips/:seq/fleet answers the fleet status of one flip', () => {
  it('needs a token, validates the seq, and answers 404 for a flip it does not track', async () => {
    await start();
    expect((await fetch(`${cp!.url}/v1/flips/1/fleet`)).status).toBe(401);
    const auth = { authorization: `Bearer ${VIEWER}` };
    expect((await fetch(`${cp!.url}/v1/flips/abc/fleet`, { headers: auth })).status).toBe(400);
    expect((await fetch(`${cp!.url}/v1/flips/0/fleet`, { headers: auth })).status).toBe(400);
    expect((await fetch(`${cp!.url}/v1/flips/1/fleet`, { headers: auth })).status).toBe(404);
    const flip = await fetch(`${cp!.url}/v1/flips`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'halt', selector: { tenant: 'acme' }, reason: 'test' }),
    });
    expect(flip.status).toBe(201);
    const res = await fetch(`${cp!.url}/v1/flips/1/fleet`, { headers: auth });
    expect(res.status).toBe(200);
    // No worker connected: complete at once.
    expect(await res.json()).toMatchObject({
      seq: 1,
      applied: 0,
      complete: true,
      acknowledged: [],
    });
  });
});
