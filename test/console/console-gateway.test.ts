/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { mountConsole } from '../../src/console/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import { hangingMcpUpstream } from '../gateway/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'console-gw-admin-token-0123456789';
const WORKER = 'console-gw-worker-token-0123456789';
const REPORTS = join(process.cwd(), 'reports');

// Browser tests need Debian's chromium (.ci/browser makes CI install it); without it they fail
// under CI=true and skip elsewhere, never silently pass.
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env['CI'] === 'true') {
  throw new Error(`${CHROMIUM} is missing (apt-get install chromium)`);
}

/** An OpenAI-compatible upstream whose streams send one event and then hold until closed. */
async function hangingLlmUpstream() {
  const state = { calls: 0, closed: 0 };
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      state.calls++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'hi' } }] })}\n\n`,
      );
    });
    res.on('close', () => state.closed++);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    state,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    async close() {
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

let cp: ControlPlane;
let gw: Gateway;
let mcp: Awaited<ReturnType<typeof hangingMcpUpstream>>;
let llm: Awaited<ReturnType<typeof hangingLlmUpstream>>;
let client: Client | undefined;
let ctx: BrowserContext | undefined;
const dirs: string[] = [];

beforeAll(async () => {
  if (!haveChromium) return;
  await mkdir(REPORTS, { recursive: true });
  cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    heartbeatMs: 300,
    staleAfterMs: 1500,
    auth: new TokenAuthenticator({
      tokens: [
        { name: 'ada', token: ADMIN, role: 'admin' },
        { name: 'gateway', token: WORKER, role: 'worker', workers: ['*'] },
      ],
    }),
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  mountConsole(cp);
  mcp = await hangingMcpUpstream();
  llm = await hangingLlmUpstream();
  gw = await Gateway.start({
    config: {
      workerId: 'gw-1',
      controlPlane: { urls: [cp.url], token: WORKER, staleAfterMs: 1500, heartbeatMs: 300 },
      listen: { port: 0 },
      llm: { openai: llm.url },
      mcp: { upstreams: { raw: { url: mcp.url } } },
    },
    ledger: new MemorySideEffectLedger(),
    logger: { info: () => {}, warn: () => {} },
  });
  await gw.waitFresh();
});

afterAll(async () => {
  await ctx?.close().catch(() => {});
  await client?.close().catch(() => {});
  await gw?.close();
  await mcp?.close();
  await llm?.close();
  await cp?.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe.skipIf(!haveChromium)(
  'KS-11.1.10 KS-15.5.3 the console shows gateway members as gateways',
  () => {
    it('lists the gateway with its seams and calls in flight at each, shows a halt it cannot enforce yet with its reason, then enforced', async () => {
      // Two streams in flight on the LLM seam and one tool call on the MCP seam, all tenant acme.
      const streams = [0, 1].map(() =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-killswitch-tenant': 'acme' },
          body: JSON.stringify({ model: 'm', messages: [], stream: true }),
        }).then((r) => r.text()),
      );
      client = new Client({ name: 'console-gw-test', version: '1' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`)));
      const call = client
        .callTool({
          name: 'raw__hang',
          arguments: {},
          _meta: { 'dev.killswitch/lineage': { tenant: 'acme', runPath: [] } },
        })
        .catch((x: unknown) => x);
      // The control plane hears it with the gateway's acknowledgements (KS-15.5.3).
      await expect
        .poll(() => cp.tracker.workers().find((w) => w.id === 'gw-1')?.gateway?.seams, {
          timeout: 10_000,
        })
        .toEqual([
          { seam: 'llm', inFlight: 2 },
          { seam: 'mcp', inFlight: 1 },
        ]);

      const profile = await mkdtemp(join(tmpdir(), 'ks-console-gw-chromium-'));
      dirs.push(profile);
      ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
        viewport: { width: 1280, height: 900 },
      });
      const page = ctx.pages()[0] ?? (await ctx.newPage());
      await page.goto(cp.url + '/');
      await page.fill('#token', ADMIN);
      await page.click('#login-form button[type=submit]');
      await expect.poll(() => page.textContent('#stream-status'), { timeout: 10_000 }).toBe('live');

      // Marked a gateway in the fleet table, and listed with its seams in the gateways card.
      const row = page.locator('#gateways tbody tr[data-gateway="gw-1"]');
      await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
      expect(await page.isVisible('#gateways-card')).toBe(true);
      expect(
        await page.locator('#fleet tbody tr[data-worker="gw-1"] .tag.gateway').textContent(),
      ).toBe('gateway');
      expect(await row.locator('[data-seam="llm"]').textContent()).toBe('llm: 2');
      expect(await row.locator('[data-seam="mcp"]').textContent()).toBe('mcp: 1');
      expect(await row.locator('.last-flip').textContent()).toBe('–');
      expect(await page.textContent('#gateways-summary')).toBe('(1 gateway)');

      // A tenant halt: the LLM streams are cut, the tool call's cancel is refused upstream, so the
      // gateway says it does not enforce the flip yet, and why.
      const flip = await fetch(`${cp.url}/v1/flips`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'halt', selector: { tenant: 'acme' }, reason: 'stop acme' }),
      });
      expect(flip.status).toBe(201);
      const seq = ((await flip.json()) as any).flip.seq as number;
      expect(((await call) as any).data).toMatchObject({ code: 'KS_ABORTED' });
      for (const s of await Promise.all(streams)) expect(s).toContain('event: error');
      await expect
        .poll(() => row.locator('.last-flip').textContent(), { timeout: 10_000 })
        .toMatch(
          new RegExp(
            `^#${seq} NOT ENFORCED: could not cancel a call in flight on MCP upstream raw \\(HTTP 503\\)`,
          ),
        );
      expect(await row.locator('.last-flip').getAttribute('class')).toContain('unenforced');
      expect(await page.textContent('#gateways-summary')).toBe(
        '(1 gateway, 1 not enforcing the last flip)',
      );
      expect(await page.locator(`#flips li[data-seq="${seq}"] .unenforced`).textContent()).toMatch(
        /^NOT ENFORCED by gw-1: could not cancel a call in flight on MCP upstream raw/,
      );
      // The calls it cut are no longer in flight there.
      await expect
        .poll(() => row.locator('[data-seam="llm"]').textContent(), { timeout: 10_000 })
        .toBe('llm: 0');
      expect(await row.locator('[data-seam="mcp"]').textContent()).toBe('mcp: 0');
      await page.screenshot({ path: join(REPORTS, 'console-gateway.png'), fullPage: true });

      // The upstream takes the retried cancel: the gateway withdraws it, the page says enforced.
      mcp.state.refuse = false;
      await expect
        .poll(() => row.locator('.last-flip').textContent(), { timeout: 15_000 })
        .toMatch(new RegExp(`^#${seq} enforced \\(\\+\\d+ ms\\)$`));
      expect(mcp.state.cancels).toHaveLength(1);
      expect(await page.textContent('#gateways-summary')).toBe('(1 gateway)');
      await expect
        .poll(() => page.locator(`#flips li[data-seq="${seq}"] .stop-status`).textContent())
        .toMatch(/^Stop complete/);
      expect(await page.locator(`#flips li[data-seq="${seq}"] .unenforced`).count()).toBe(0);
    });
  },
);
