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

describe('KS-15.1.4 a stale gateway cuts the MCP calls in flight and refuses new ones', () => {
  it('the control plane gone: the call in flight is cancelled upstream and answered KS_ABORTED (cause stale, no flip); a new call is refused and never sent', async () => {
    up = await hangingMcpUpstream();
    up.state.refuse = false;
    e = await gatewayEnv({
      staleAfterMs: 1000,
      config: { mcp: { upstreams: { raw: { url: up.url } } } },
    });
    client = await mcpClient(e, 'stale-test');
    const call = callAsAcme(client, 'raw__hang');
    await until(() => up!.state.calls === 1, 5000, 'the upstream to receive the call');
    await e.cp.close();
    // The call never ends by itself: only the gateway failing closed answers it.
    const err = (await call) as any;
    expect(err.data).toMatchObject({ code: 'KS_ABORTED', cause: 'stale' });
    expect(err.data.flip).toBeUndefined();
    await until(() => up!.state.cancels.length === 1, 5000, 'the cancel to reach the upstream');
    expect(up.state.cancels[0]).toMatchObject({ reason: 'cancelled by the kill switch' });
    const again = (await client
      .callTool({ name: 'raw__hang', arguments: {} })
      .catch((x: unknown) => x)) as any;
    expect(again.data).toMatchObject({ code: 'KS_HALTED', cause: 'stale' });
    expect(up.state.calls).toBe(1);
  });
});
