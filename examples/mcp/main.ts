/**
 * MCP tool calls under the kill switch: `guardMcpClient` (agent.ts) wraps an MCP client (the
 * official `@modelcontextprotocol/sdk`) so each `tools/call` is a guarded effect. The example serves a
 * real MCP server over Streamable HTTP on loopback with a slow `send_update` tool, and each run
 * calls it three times; a flip that halts the tenant cancels the call in flight upstream
 * (`notifications/cancelled`) and ends the run with the HaltedError naming the flip.
 *
 * Run: `npm start` in one terminal (the control plane), then `npm run build && node
 * dist/examples/mcp/main.js`, and flip: `npx killswitch flip --tenant acme --reason test`.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { OpenFeature } from '@openfeature/server-sdk';
import {
  EffectGuard,
  HaltedError,
  KillSwitchProvider,
  MemorySideEffectLedger,
} from 'openfeature-kill-switch';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';
import { handleTicket } from './agent.js';
import { serveToolServer } from './tool-server.js';

const env = process.env;
const url = env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411';
const dataDir = resolve(env['KILLSWITCH_DATA_DIR'] ?? './.killswitch');
const tenant = env['EXAMPLE_TENANT'] ?? 'acme';
const log = (line: string) => process.stdout.write(`${line}\n`);

const token =
  env['KILLSWITCH_TOKEN'] ??
  (await readFile(join(dataDir, 'admin.token'), 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  ));
const provider = new KillSwitchProvider({
  source: new RemoteFlipSource({
    urls: [url],
    workerId: `mcp-example-${process.pid}`,
    release: 'v1',
    ...(token !== undefined ? { token } : {}),
  }),
});
await OpenFeature.setProviderAndWait('mcp-example', provider);
await provider.waitUntilFresh({ timeoutMs: 10_000 });
const guard = new EffectGuard({
  client: OpenFeature.getClient('mcp-example'),
  ledger: new MemorySideEffectLedger(),
});

const server = await serveToolServer(log);
const client = new Client({ name: 'mcp-example', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(server.url));

log(
  `following ${url} as tenant ${tenant}; flip with: npx killswitch flip --tenant ${tenant} --reason test`,
);
for (let n = 1; ; n++) {
  const runId = `ticket-${n}`;
  log(`run ${runId}: started`);
  try {
    log(`run ${runId}: done (${await handleTicket(client, guard, runId, tenant)})`);
  } catch (err) {
    if (!(err instanceof HaltedError)) throw err;
    log(`run ${runId}: HALTED by flip #${err.flip?.seq ?? '?'} (${err.code}): ${err.message}`);
    break;
  }
}
await client.close();
await server.close();
await guard.close();
await OpenFeature.close();
