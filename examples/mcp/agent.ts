import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { EffectGuard } from 'openfeature-kill-switch';
import { guardMcpClient } from 'openfeature-kill-switch/mcp';

/** One ticket, one run of MCP tool calls under the kill switch: a halt ends it with `HaltedError`. */
export async function handleTicket(
  client: Client,
  guard: EffectGuard,
  runId: string,
  tenant: string,
) {
  const mcp = guardMcpClient(client, guard, { runId, tenant });
  for (let i = 0; i < 3; i++) {
    const callId = `${runId}-call-${i}`; // the model's tool-call id
    const params = { name: 'send_update', arguments: { ticket: runId } };
    await mcp.callTool(params, undefined, { callId });
  }
  return `3 updates sent for ${runId}`;
}
