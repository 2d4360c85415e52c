/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/gateway/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { PG_URL, RUN_PG, dropSchemas, schemaName } from '../postgres/pg-harness.js';
import { assertBuilt, startServe, type ServeProcess } from '../suites/support/serve-process.js';
import { hangingMcpUpstream, silent, until } from './harness.js';

// Two real `killswitch serve` processes (the compiled CLI: `npm run build` first) on one
// PostgreSQL schema, a gateway following only replica A, and the operator asking replica B.
const ADMIN = 'gw-replica-admin-token-0123456789';
const CHROMIUM = '/usr/bin/chromium';
// The browser test needs Debian's chromium: under CI=true its absence fails, elsewhere it skips.
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env['CI'] === 'true') {
  throw new Error(`${CHROMIUM} is missing (apt-get install chromium)`);
}
const WORKER = 'gw-replica-worker-token-0123456789';

const schemas = new Set<string>();
const children = new Set<ChildProcess>();
const dirs: string[] = [];
let gw: Gateway | undefined;
let client: Client | undefined;
let up: Awaited<ReturnType<typeof hangingMcpUpstream>> | undefined;
let ctx: BrowserContext | undefined;

afterEach(async () => {
  await ctx?.close().catch(() => undefined);
  ctx = undefined;
  await client?.close().catch(() => undefined);
  await gw?.close();
  await up?.close();
  client = gw = up = undefined;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await dropSchemas(schemas);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function startReplica(schema: string): Promise<ServeProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ks-gw-replica-'));
  dirs.push(dataDir);
  const r = await startServe({
    dataDir,
    store: `${PG_URL}?schema=${schema}`,
    staleAfterMs: 1500,
    heartbeatMs: 200,
    tokens: [
      { name: 'admin', token: ADMIN, role: 'admin' },
      { name: 'gw', token: WORKER, role: 'worker', workers: ['*'] },
    ],
  });
  children.add(r.child);
  return r;
}

async function get(r: ServeProcess, path: string): Promise<any> {
  const res = await fetch(`${r.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  expect(res.status).toBe(200);
  return res.json();
}

const gatewayOf = async (r: ServeProcess) =>
  ((await get(r, '/v1/workers')).workers as any[]).find((w) => w.id === 'gw-replicated');

/**
 * Two replicas on one schema, a gateway following only A (its MCP upstream refuses cancels until
 * told otherwise) and one MCP call of tenant acme in flight through it.
 */
async function fleetWithGatewayOnA() {
  assertBuilt();
  const schema = schemaName('gwrepl');
  schemas.add(schema);
  const [a, b] = await Promise.all([startReplica(schema), startReplica(schema)]);
  up = await hangingMcpUpstream();
  gw = await Gateway.start({
    config: {
      workerId: 'gw-replicated',
      controlPlane: { urls: [a.url], token: WORKER, staleAfterMs: 1500, heartbeatMs: 200 },
      listen: { port: 0 },
      mcp: { upstreams: { raw: { url: up.url } } },
    },
    ledger: new MemorySideEffectLedger(),
    logger: silent,
  });
  await gw.waitFresh();
  client = new Client({ name: 'replica-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`)));
  const call = client
    .callTool({
      name: 'raw__hang',
      arguments: {},
      _meta: { 'dev.killswitch/lineage': { tenant: 'acme', runPath: [] } },
    })
    .catch((x: unknown) => x);
  await until(() => up!.state.calls === 1, 10_000, 'the upstream to receive the call');
  return { a, b, call };
}

async function haltOn(r: ServeProcess, wait: number): Promise<any> {
  const posted = await fetch(`${r.url}/v1/flips`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'replicated gateway',
      wait,
    }),
  });
  expect(posted.status).toBe(201);
  return posted.json();
}

describe.runIf(RUN_PG)(
  'KS-15.5.4 (KS-15.5.3, KS-6.6) a gateway is seen as a gateway on every replica of a shared fleet',
  () => {
    it("replica B lists the seams and calls in flight of a gateway that acknowledges only to A, and the gateway's negative acknowledgement keeps the flip from complete on both until the cancel is taken", async () => {
      const { a, b, call } = await fleetWithGatewayOnA();

      // The gateway's report, acknowledged to A, is on B too: a gateway with its call in flight.
      for (const r of [a, b]) {
        await until(
          async () => (await gatewayOf(r))?.gateway?.seams?.[0]?.inFlight === 1,
          10_000,
          `replica ${r === a ? 'A' : 'B'} to list the gateway's MCP call in flight`,
        );
        const w = await gatewayOf(r);
        expect(w.gateway.seams).toEqual([{ seam: 'mcp', inFlight: 1 }]);
        expect(Number.isNaN(Date.parse(w.gateway.at))).toBe(false);
      }
      const onB = await get(b, '/v1/workers');
      const selfB = (onB.replicas as any[]).find((r) => r.self === true).replica;
      expect((await gatewayOf(b)).replica).not.toBe(selfB);

      // A halt posted to B: the gateway (on A) cuts the call but the upstream refuses the cancel,
      // so its negative acknowledgement reaches B and the flip is not complete there, nor on A.
      const answer = await haltOn(b, 2000);
      const seq = answer.flip.seq as number;
      expect(((await call) as any).data).toMatchObject({ code: 'KS_ABORTED' });
      expect(up!.state.refusedCancels).toBeGreaterThan(0);
      for (const r of [b, a]) {
        await until(
          async () => ((await get(r, `/v1/flips/${seq}/fleet`)).unenforced ?? []).length === 1,
          10_000,
          `replica ${r === a ? 'A' : 'B'} to list the gateway unenforced`,
        );
        const f = await get(r, `/v1/flips/${seq}/fleet`);
        expect(f.complete).toBe(false);
        expect(f.unenforced[0]).toMatchObject({ workerId: 'gw-replicated' });
        expect(f.unenforced[0].reason).toMatch(
          /^could not cancel a call in flight on MCP upstream raw/,
        );
        expect(f.acknowledged.map((x: any) => x.workerId)).not.toContain('gw-replicated');
      }
      expect(answer.fleet.complete).toBe(false);

      // The upstream takes the retried cancel: enforced, complete on both replicas, and the
      // gateway's report on B says no call is in flight any more.
      up!.state.refuse = false;
      for (const r of [b, a]) {
        await until(
          async () => (await get(r, `/v1/flips/${seq}/fleet`)).complete === true,
          15_000,
          `the flip to complete on replica ${r === a ? 'A' : 'B'}`,
        );
        const f = await get(r, `/v1/flips/${seq}/fleet`);
        expect(f.unenforced).toEqual([]);
        expect(f.acknowledged.map((x: any) => x.workerId)).toContain('gw-replicated');
      }
      await until(
        async () => (await gatewayOf(b))?.gateway?.seams?.[0]?.inFlight === 0,
        10_000,
        'replica B to see no call in flight at the gateway',
      );
    });
  },
);

describe.runIf(RUN_PG && haveChromium)(
  'KS-15.5.4 (KS-11.1.10) the console of a replica the gateway does not acknowledge to shows it as a gateway',
  () => {
    it("replica B's console lists the gateway on A with its MCP call in flight, then NOT ENFORCED with the reason, then enforced", async () => {
      const { b, call } = await fleetWithGatewayOnA();
      const profile = await mkdtemp(join(tmpdir(), 'ks-gw-replica-chromium-'));
      dirs.push(profile);
      ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
        viewport: { width: 1280, height: 900 },
      });
      const page = ctx.pages()[0] ?? (await ctx.newPage());
      await page.goto(b.url + '/');
      await page.fill('#token', ADMIN);
      await page.click('#login-form button[type=submit]');
      await expect.poll(() => page.textContent('#stream-status'), { timeout: 10_000 }).toBe('live');
      const row = page.locator('#gateways tbody tr[data-gateway="gw-replicated"]');
      await expect.poll(() => row.count(), { timeout: 15_000 }).toBe(1);
      await expect
        .poll(() => row.locator('[data-seam="mcp"]').textContent(), { timeout: 15_000 })
        .toBe('mcp: 1');

      const seq = (await haltOn(b, 0)).flip.seq as number;
      expect(((await call) as any).data).toMatchObject({ code: 'KS_ABORTED' });
      await expect
        .poll(() => row.locator('.last-flip').textContent(), { timeout: 15_000 })
        .toMatch(
          new RegExp(
            `^#${seq} NOT ENFORCED: could not cancel a call in flight on MCP upstream raw`,
          ),
        );
      up!.state.refuse = false;
      await expect
        .poll(() => row.locator('.last-flip').textContent(), { timeout: 20_000 })
        .toMatch(new RegExp(`^#${seq} enforced \\(\\+\\d+ ms\\)$`));
      await expect
        .poll(() => row.locator('[data-seam="mcp"]').textContent(), { timeout: 15_000 })
        .toBe('mcp: 0');
    });
  },
);
