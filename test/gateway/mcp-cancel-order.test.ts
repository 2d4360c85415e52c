/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import type { ServerResponse } from 'node:http';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  callAsAcme,
  gatewayEnv,
  rawMcpUpstream,
  until,
  mcpClient,
  type GatewayEnv,
} from './harness.js';

/**
 * A Streamable HTTP upstream (2025-06-18) that takes a while to register a `tools/call` it
 * received (`registerAfterMs`), as a busy server may: a `notifications/cancelled` for a request
 * it has not registered is ignored (the spec lets it), and the call then runs to its end. It
 * opens the call's event stream (headers) once the call is registered, as the MCP SDK does.
 */
async function lateRegisteringUpstream(registerAfterMs: number, runMs: number) {
  const state = {
    received: 0,
    ignoredCancels: 0,
    cancelled: [] as unknown[],
    completed: [] as unknown[],
    open: new Set<ServerResponse>(),
  };
  const registered = new Map<unknown, ServerResponse>();
  const up = await rawMcpUpstream({
    name: 'late',
    tools: ['slow'],
    open: state.open,
    handle(m, res, answer) {
      switch (m.method) {
        case 'ping':
          return answer({});
        case 'tools/call':
          state.received++;
          state.open.add(res);
          setTimeout(() => {
            registered.set(m.id, res);
            up.openStream(res);
            setTimeout(() => {
              if (!registered.delete(m.id)) return;
              state.completed.push(m.id);
              res.end(
                `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [] } })}\n\n`,
              );
            }, runMs);
          }, registerAfterMs);
          return;
        case 'notifications/cancelled': {
          const id = m.params?.requestId;
          const call = registered.get(id);
          if (call === undefined) state.ignoredCancels++;
          else {
            registered.delete(id);
            state.cancelled.push(id);
            call.end();
          }
          return void res.writeHead(202).end();
        }
        default:
          return void res.writeHead(202).end();
      }
    },
  });
  return { state, url: up.url, close: () => up.close() };
}

let e: GatewayEnv | undefined;
let up: Awaited<ReturnType<typeof lateRegisteringUpstream>> | undefined;
let client: Client | undefined;
afterEach(async () => {
  await client?.close();
  await e?.close();
  await up?.close();
  client = e = up = undefined;
});

describe('KS-15.3.11 a cancel that may reach an HTTP upstream before its call is not counted as taken', () => {
  it('a halt before the upstream registered the call: the first cancel is ignored there, the gateway stays unenforced, sends it again once the upstream answers on the call stream, and the flip completes only with the call cancelled upstream (nothing runs to its end)', async () => {
    up = await lateRegisteringUpstream(1000, 1500);
    e = await gatewayEnv({ config: { mcp: { upstreams: { late: { url: up.url } } } } });
    client = await mcpClient(e, 'order-test');
    const call = callAsAcme(client, 'late__slow');
    await until(() => up!.state.received === 1, 5000, 'the upstream to receive the call');
    const r = await e.halt({ tenant: 'acme' }, 'stop acme', { wait: 10_000 });
    // The client was answered at once.
    expect(((await call) as any).data).toMatchObject({ code: 'KS_ABORTED' });
    // The first cancel reached the upstream before it knew the call, and was ignored there.
    expect(up.state.ignoredCancels).toBe(1);
    // The flip completed only once the call was cancelled where it runs.
    expect(r.fleet.complete).toBe(true);
    expect(up.state.cancelled).toHaveLength(1);
    expect(r.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
    expect(e.gw.unenforced).toEqual([]);
    // Nothing of the call ran to its end upstream, after the stop completed or before.
    await new Promise((res) => setTimeout(res, 1800));
    expect(up.state.completed).toEqual([]);
  });

  it('while the upstream has not answered on the call stream, the flip lists the gateway as unenforced with the reason', async () => {
    up = await lateRegisteringUpstream(1500, 1500);
    e = await gatewayEnv({ config: { mcp: { upstreams: { late: { url: up.url } } } } });
    client = await mcpClient(e, 'order-test');
    const call = callAsAcme(client, 'late__slow');
    await until(() => up!.state.received === 1, 5000, 'the upstream to receive the call');
    const r = await e.halt({ tenant: 'acme' }, 'stop acme', { wait: 400 });
    await call;
    expect(r.fleet.complete).toBe(false);
    expect(r.fleet.unenforced).toHaveLength(1);
    expect(r.fleet.unenforced[0].reason).toMatch(
      /^could not cancel a call in flight on MCP upstream late \(sent before the upstream answered on the call's stream, so it may have arrived before the call; sent again once it does\)/,
    );
    const seq = r.flip.seq as number;
    await until(() => e!.cp.tracker.status(seq)?.complete === true, 10_000, 'the flip to complete');
    expect(up.state.cancelled).toHaveLength(1);
  });
});
