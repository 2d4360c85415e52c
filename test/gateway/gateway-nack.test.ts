/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  callAsAcme,
  gatewayEnv,
  hangingMcpUpstream,
  until,
  mcpClient,
  type GatewayEnv,
} from './harness.js';

let e: GatewayEnv | undefined;
let up: Awaited<ReturnType<typeof hangingMcpUpstream>> | undefined;
let client: Client | undefined;
afterEach(async () => {
  await client?.close();
  await e?.close();
  await up?.close();
  client = e = up = undefined;
});

describe('KS-15.1.6 (KS-6.5) the gateway sends a negative acknowledgement for a halt it cannot enforce yet', () => {
  it('a call in flight whose upstream refuses the cancel: the flip answer lists the gateway as unenforced, apart from laggards; once the cancel is taken the flip completes', async () => {
    up = await hangingMcpUpstream();
    e = await gatewayEnv({ config: { mcp: { upstreams: { raw: { url: up.url } } } } });
    client = await mcpClient(e, 'nack-test');
    const call = callAsAcme(client, 'raw__hang');
    await until(() => up!.state.calls === 1, 5000, 'the upstream to receive the call');
    await new Promise((r) => setTimeout(r, 300)); // the gateway's lease renewed at the head
    const enforced: number[] = [];
    e.gw.onEnforced((s) => enforced.push(s));
    const r = await e.halt({ tenant: 'acme' }, 'stop acme', { wait: 1500 });
    // Applied, not enforced: the drill's gateway member reports its stop only at onEnforced.
    expect(e.gw.appliedSeq).toBeGreaterThanOrEqual(r.flip.seq);
    expect(enforced).toEqual([]);
    // The client was answered at once all the same.
    expect(((await call) as any).data).toMatchObject({ code: 'KS_ABORTED' });
    expect(up.state.refusedCancels).toBeGreaterThan(0);
    const f = r.fleet;
    expect(f.complete).toBe(false);
    expect(f.completeAt).toBeNull();
    expect(f.laggards).toEqual([]);
    expect(f.acknowledged).toEqual([]);
    expect(f.unenforced).toHaveLength(1);
    expect(f.unenforced[0]).toMatchObject({ workerId: 'gateway-1' });
    // Names the upstream and what failed, never the flip's text.
    expect(f.unenforced[0].reason).toMatch(
      /^could not cancel a call in flight on MCP upstream raw \(HTTP 503\): it may still run there; retrying$/,
    );
    expect(e.gw.unenforced).toEqual([{ seq: r.flip.seq, reason: f.unenforced[0].reason }]);

    // The upstream takes the retried cancel: withdrawn, the flip completes with the gateway in it.
    up.state.refuse = false;
    const seq = r.flip.seq as number;
    await until(() => e!.cp.tracker.status(seq)?.complete === true, 10_000, 'the flip to complete');
    const after = e.cp.tracker.status(seq)!;
    expect(after.unenforced).toEqual([]);
    expect(after.acknowledged.map((a) => a.workerId)).toEqual(['gateway-1']);
    expect(enforced).toEqual([seq]);
    expect(up.state.cancels).toEqual([
      { requestId: expect.any(Number), reason: 'cancelled by the kill switch' },
    ]);
    expect(e.gw.unenforced).toEqual([]);
  });

  it('a cancel the upstream takes at once: the flip completes with the gateway acknowledged, nothing listed unenforced', async () => {
    up = await hangingMcpUpstream();
    up.state.refuse = false;
    e = await gatewayEnv({ config: { mcp: { upstreams: { raw: { url: up.url } } } } });
    client = await mcpClient(e, 'nack-test');
    const call = callAsAcme(client, 'raw__hang');
    await until(() => up!.state.calls === 1, 5000, 'the upstream to receive the call');
    await new Promise((r) => setTimeout(r, 300));
    const r = await e.halt({ tenant: 'acme' }, 'stop acme', { wait: 5000 });
    await call;
    expect(r.fleet.complete).toBe(true);
    expect(r.fleet.unenforced).toEqual([]);
    expect(r.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
    expect(up.state.cancels).toHaveLength(1);
    expect(e.gw.unenforced).toEqual([]);
  });
});
