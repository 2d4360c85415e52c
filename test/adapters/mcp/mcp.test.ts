import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import { guardMcpClient } from '../../../src/adapters/mcp/index.js';
import { HaltedError } from '../../../src/errors.js';
import { effectKey } from '../../../src/ledger/index.js';
import { LineageWire, lineageFromMeta } from '../../../src/lineage/index.js';
import { childRunId, runInScope, spawnChildRun } from '../../../src/scope/index.js';
import { killSwitchEnv, sleep, type KillSwitchEnv } from '../harness.js';
// @ts-expect-error: a plain ES module (it also runs alone as the stdio server), no types
import { serveHttp } from './mcp-test-server.mjs';

interface ServerEvent {
  readonly type: 'call' | 'landed' | 'cancelled' | 'progress';
  readonly tool: string;
  readonly meta?: Record<string, unknown>;
  readonly reason?: string;
}

/** A connected client and what the real server saw. */
interface Upstream {
  readonly client: Client;
  readonly events: ServerEvent[];
  close(): Promise<void>;
}

const SERVER = fileURLToPath(new URL('./mcp-test-server.mjs', import.meta.url));

const TRANSPORTS: readonly [string, () => Promise<Upstream>][] = [
  [
    'Streamable HTTP on loopback',
    async () => {
      const events: ServerEvent[] = [];
      const server = (await serveHttp((e: ServerEvent) => events.push(e))) as {
        url: URL;
        close(): Promise<void>;
      };
      const client = new Client({ name: 'ks-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(server.url));
      return {
        client,
        events,
        async close() {
          await client.close();
          await server.close();
        },
      };
    },
  ],
  [
    'stdio (a server process)',
    async () => {
      const events: ServerEvent[] = [];
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [SERVER],
        stderr: 'pipe',
      });
      const lines = createInterface({
        input: transport.stderr! as unknown as NodeJS.ReadableStream,
      });
      lines.on('line', (l) => {
        if (l.startsWith('{')) events.push(JSON.parse(l) as ServerEvent);
      });
      const client = new Client({ name: 'ks-test', version: '1.0.0' });
      await client.connect(transport);
      return { client, events, close: () => client.close() };
    },
  ],
];

const envs: KillSwitchEnv[] = [];
const upstreams: Upstream[] = [];
afterEach(async () => {
  for (const u of upstreams.splice(0)) await u.close();
  for (const e of envs.splice(0)) await e.close();
});

async function setup(make: () => Promise<Upstream>) {
  const e = await killSwitchEnv();
  envs.push(e);
  const u = await make();
  upstreams.push(u);
  return { e, u };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

describe.each(TRANSPORTS)(
  'KS-14.4 the MCP client adapter against a real server over %s',
  (_t, make) => {
    describe('KS-14.1.2 a halted capability refuses the tool and stops the run', () => {
      it('rejects with the HaltedError naming the flip, sends nothing upstream, and refuses the run afterwards', async () => {
        const { e, u } = await setup(make);
        const { seq } = await e.halt({ capability: 'refund' }, 'refunds frozen');
        const mcp = guardMcpClient(u.client, e.guard, { runId: 'run-cap', tenant: 'acme' });
        const err = await mcp
          .callTool({ name: 'refund', arguments: { order: 1 } }, undefined, { callId: 'call-0' })
          .catch((x: unknown) => x);
        expect(err).toBeInstanceOf(HaltedError);
        expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq, reason: 'refunds frozen' } });
        // The run is stopped: another tool of the same run is refused too, nothing reaches the server.
        await expect(mcp.callTool({ name: 'slow', arguments: { ms: 1 } })).rejects.toBe(err);
        await sleep(20);
        expect(u.events).toEqual([]);
        const [entry] = await e.ledger.entries();
        expect(entry).toMatchObject({ key: effectKey('run-cap', 'call-0'), status: 'refused' });
      });
    });

    describe('KS-14.1.3 / KS-14.4.2 a halt arriving mid-call cancels it upstream and frees the caller', () => {
      it('aborts within the turn that delivered the flip, sends notifications/cancelled with a fixed reason', async () => {
        const { e, u } = await setup(make);
        const mcp = guardMcpClient(u.client, e.guard, { runId: 'run-mid', tenant: 'acme' });
        let turned = true;
        mcp.signal.addEventListener('abort', () => (turned = e.turnedSinceArrival()));
        const p = mcp
          .callTool({ name: 'slow', arguments: { ms: 5000 } }, undefined, { callId: 'call-0' })
          .catch((x: unknown) => x);
        await until(() => u.events.some((x) => x.type === 'call'), 'the call to arrive');
        const { seq, arrivedAt } = await e.halt({ tenant: 'acme' }, 'incident 7 at acme');
        const err = await p;
        expect(performance.now() - arrivedAt).toBeLessThan(1000);
        expect(err).toMatchObject({ name: 'HaltedError', code: 'KS_ABORTED', flip: { seq } });
        expect(turned).toBe(false);
        // The server's handler saw the cancellation (not a disconnect): its signal aborted.
        await until(
          () => u.events.some((x) => x.type === 'cancelled'),
          'the cancellation upstream',
        );
        const cancelled = u.events.find((x) => x.type === 'cancelled')!;
        expect(cancelled.reason).toBe('cancelled by the kill switch');
        expect(cancelled.reason).not.toContain('acme');
        expect(u.events.some((x) => x.type === 'landed')).toBe(false);
        expect((await e.ledger.entries())[0]?.status).toBe('aborted');
      });
    });

    describe('KS-14.1.4 a halt during a streamed (progress) response ends it', () => {
      it('no progress reaches the caller after the flip; the server stops streaming', async () => {
        const { e, u } = await setup(make);
        const mcp = guardMcpClient(u.client, e.guard, { runId: 'run-progress', tenant: 'acme' });
        let seen = 0;
        let afterFlip = 0;
        let flipped = false;
        const p = mcp
          .callTool({ name: 'report', arguments: { steps: 200 } }, undefined, {
            onprogress: () => {
              seen++;
              if (flipped) afterFlip++;
            },
          })
          .catch((x: unknown) => x);
        await until(() => seen >= 3, 'three progress notifications');
        await e.halt({ runId: 'run-progress' });
        flipped = true;
        expect(await p).toBeInstanceOf(HaltedError);
        await until(() => u.events.some((x) => x.type === 'cancelled'), 'the server to stop');
        await sleep(30);
        expect(afterFlip).toBe(0);
        expect(u.events.filter((x) => x.type === 'progress').length).toBeLessThan(200);
        expect(u.events.some((x) => x.type === 'landed')).toBe(false);
      });
    });

    describe('KS-14.1.5 the ledger keys calls by run and call id; a resumed run repeats none', () => {
      it('records intent and landed, returns the recorded result on a replay, and calls the server once', async () => {
        const { e, u } = await setup(make);
        const first = await guardMcpClient(u.client, e.guard, { runId: 'run-r' }).callTool({
          name: 'refund',
          arguments: { order: 42 },
        });
        expect(first.content).toEqual([{ type: 'text', text: 'refunded 42' }]);
        const [entry] = await e.ledger.entries({ runId: 'run-r' });
        expect(entry).toMatchObject({ key: effectKey('run-r', 'refund#1'), capability: 'refund' });
        expect(entry?.history.map((h) => h.status)).toEqual(['intent', 'landed']);
        // The resumed run makes the same first call: it is answered from the ledger.
        const again = await guardMcpClient(u.client, e.guard, { runId: 'run-r' }).callTool({
          name: 'refund',
          arguments: { order: 42 },
        });
        expect(again.content).toEqual(first.content);
        await sleep(20);
        expect(u.events.filter((x) => x.type === 'call')).toHaveLength(1);
      });
    });

    describe("KS-14.1.7 an unrelated tenant's run keeps going", () => {
      it('halting tenant acme refuses its calls while tenant globex calls through the same client', async () => {
        const { e, u } = await setup(make);
        await e.halt({ tenant: 'acme' });
        const acme = guardMcpClient(u.client, e.guard, { runId: 'run-a', tenant: 'acme' });
        const globex = guardMcpClient(u.client, e.guard, { runId: 'run-g', tenant: 'globex' });
        await expect(
          acme.callTool({ name: 'refund', arguments: { order: 1 } }),
        ).rejects.toBeInstanceOf(HaltedError);
        for (let i = 0; i < 3; i++)
          await globex.callTool({ name: 'refund', arguments: { order: i } });
        await sleep(20);
        expect(u.events.filter((x) => x.type === 'landed')).toHaveLength(3);
      });
    });

    describe('KS-14.4.3 / KS-14.1.6 the lineage travels in _meta; a halted parent stops its children', () => {
      it("sends the run path and tenant under dev.killswitch/lineage, keeping the caller's _meta keys", async () => {
        const { e, u } = await setup(make);
        const mcp = guardMcpClient(u.client, e.guard, { runId: 'run-m', tenant: 'acme' });
        await mcp.callTool({
          name: 'refund',
          arguments: { order: 1 },
          _meta: { 'example.com/trace': 't1', [LineageWire.META_KEY]: { runPath: ['forged'] } },
        });
        await until(() => u.events.some((x) => x.type === 'call'), 'the call');
        const meta = u.events.find((x) => x.type === 'call')!.meta!;
        expect(meta['example.com/trace']).toBe('t1');
        // The run's own lineage replaces the one the caller put there.
        expect(lineageFromMeta(meta)).toEqual({ tenant: 'acme', runPath: ['run-m'] });
      });

      it("a client guarded inside a child run sends the child's path; halting the parent aborts its call in flight and refuses the next spawn", async () => {
        const { e, u } = await setup(make);
        const parent = guardMcpClient(u.client, e.guard, { runId: 'root-1', tenant: 'acme' });
        const inFlight = runInScope(parent.lineage, () =>
          spawnChildRun(e.guard, 'research-0', () => {
            // No options: the run, tenant and path come from the run scope.
            const child = guardMcpClient(u.client, e.guard);
            expect(child.context.runPath).toEqual(['root-1', childRunId('root-1', 'research-0')]);
            return child.callTool({ name: 'slow', arguments: { ms: 5000 } });
          }),
        );
        inFlight.catch(() => undefined);
        await until(() => u.events.some((x) => x.type === 'call' && x.tool === 'slow'), 'the call');
        const call = u.events.find((x) => x.tool === 'slow')!;
        expect(lineageFromMeta(call.meta)).toEqual({
          tenant: 'acme',
          runPath: ['root-1', childRunId('root-1', 'research-0')],
        });
        const { seq } = await e.halt({ runId: 'root-1' });
        const err = await inFlight.then(
          () => undefined,
          (x: unknown) => x,
        );
        expect(err).toBeInstanceOf(HaltedError);
        expect((err as HaltedError).flip?.seq).toBe(seq);
        await until(() => u.events.some((x) => x.type === 'cancelled'), 'the upstream cancel');
        // A child spawned after the halt is refused before any call leaves.
        await expect(
          parent.child('research-1', (c) =>
            c.callTool({ name: 'refund', arguments: { order: 1 } }),
          ),
        ).rejects.toMatchObject({ code: 'KS_HALTED' });
        expect(u.events.filter((x) => x.tool === 'refund')).toHaveLength(0);
        // An unrelated tenant's run keeps going on the same client.
        await guardMcpClient(u.client, e.guard, { runId: 'root-2', tenant: 'globex' }).callTool({
          name: 'refund',
          arguments: { order: 2 },
        });
        expect(u.events.filter((x) => x.type === 'landed' && x.tool === 'refund')).toHaveLength(1);
      });
    });

    describe('KS-14.4.1 the guarded client passes everything but callTool through', () => {
      it('lists tools through the proxy and guards callTool on it', async () => {
        const { e, u } = await setup(make);
        await e.halt({ capability: 'refund' });
        const mcp = guardMcpClient(u.client, e.guard, { runId: 'run-p' });
        const { tools } = await mcp.client.listTools();
        expect(tools.map((t) => t.name).sort()).toEqual(['refund', 'report', 'slow']);
        await expect(
          mcp.client.callTool({ name: 'refund', arguments: { order: 1 } }),
        ).rejects.toBeInstanceOf(HaltedError);
      });
    });
  },
);
