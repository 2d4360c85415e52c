/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { callAsAcme, gatewayEnv, until, mcpClient, type GatewayEnv } from './harness.js';

/**
 * A Streamable HTTP MCP upstream written by hand that closes idle keep-alive connections after
 * 3 s (Node's and uvicorn's default is 5 s) and notes the socket every message came on.
 */
async function upstream() {
  const state = { calls: 0, pings: 0, cancels: [] as { at: number; socket: Socket }[] };
  const open = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(200).end(); // DELETE: session over
      const m = JSON.parse(text);
      const answer = (result: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'cc-1' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
      };
      switch (m.method) {
        case 'initialize':
          return answer({
            protocolVersion: '2025-06-18',
            capabilities: { tools: {} },
            serverInfo: { name: 'cc', version: '1' },
          });
        case 'tools/call':
          state.calls++;
          if (m.params?.name === 'quick') return answer({ content: [] });
          open.add(res); // never answered
          return;
        case 'ping':
          state.pings++;
          return answer({});
        case 'notifications/cancelled':
          state.cancels.push({ at: performance.now(), socket: req.socket });
          return void res.writeHead(202).end();
        default:
          return void res.writeHead(202).end();
      }
    });
  });
  http.keepAliveTimeout = 3000;
  http.on('connection', (s: Socket) => sockets.add(s));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    state,
    sockets,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    async close() {
      for (const r of open) r.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

let e: GatewayEnv | undefined;
let up: Awaited<ReturnType<typeof upstream>> | undefined;
let client: Client | undefined;
afterEach(async () => {
  await client?.close();
  await e?.close();
  await up?.close();
  client = e = up = undefined;
});

describe('KS-15.3.9 the cancel connection to an HTTP upstream is kept open while calls are in flight', () => {
  it('a halt 3.5 s into a call (past the upstream keep-alive timeout) sends its cancel on a connection opened before the halt', async () => {
    up = await upstream();
    e = await gatewayEnv({ config: { mcp: { upstreams: { cc: { url: up.url } } } } });
    client = await mcpClient(e, 'cc-test');
    const call = callAsAcme(client, 'cc__hang');
    await until(() => up!.state.calls === 1, 5000, 'the upstream to receive the call');
    // Idle longer than the upstream keeps a connection: only a kept-warm one is still open.
    await new Promise((r) => setTimeout(r, 3500));
    expect(up.state.pings).toBeGreaterThanOrEqual(2);
    const before = new Set([...up.sockets].filter((s) => !s.destroyed));
    await e.halt({ tenant: 'acme' }, 'stop acme', { wait: 5000 });
    expect(((await call) as any).data).toMatchObject({ code: 'KS_ABORTED' });
    await until(() => up!.state.cancels.length === 1, 5000, 'the cancel');
    // The cancel came on a connection that was open before the halt: no handshake on the path.
    expect(before.has(up.state.cancels[0]!.socket)).toBe(true);
    // Nothing is kept warm once no call is in flight.
    const pings = up.state.pings;
    await new Promise((r) => setTimeout(r, 2300));
    expect(up.state.pings).toBe(pings);
  }, 20_000);

  it('calls one after another do not each cost a ping: the connection a ping proved open within 2 s is not warmed again', async () => {
    up = await upstream();
    e = await gatewayEnv({ config: { mcp: { upstreams: { cc: { url: up.url } } } } });
    client = await mcpClient(e, 'cc-test');
    const t0 = performance.now();
    for (let i = 0; i < 30; i++) await client.callTool({ name: 'cc__quick', arguments: {} });
    const elapsed = performance.now() - t0;
    expect(up.state.calls).toBe(30);
    // One ping per 2 s of calls at most (each call went 0 -> 1 -> 0 in flight), never one per call.
    expect(up.state.pings).toBeGreaterThanOrEqual(1);
    expect(up.state.pings).toBeLessThanOrEqual(1 + Math.ceil(elapsed / 2000));
  }, 20_000);
});
