import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/** An MCP server with a slow `send_update` tool that honours cancellation, on 127.0.0.1:0. */
export async function serveToolServer(log: (line: string) => void) {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer(async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    let transport = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (transport === undefined) {
      const created: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, created);
        },
      });
      transport = created;
      const server = new McpServer({ name: 'updates', version: '1.0.0' });
      server.registerTool(
        'send_update',
        {
          description: 'Sends the customer an update (takes 400 ms)',
          inputSchema: { ticket: z.string() },
        },
        async ({ ticket }, extra) => {
          await new Promise<void>((done) => {
            const t = setTimeout(done, 400);
            extra.signal.addEventListener('abort', () => {
              clearTimeout(t);
              done();
            });
          });
          log(`  tool send_update ${extra.signal.aborted ? 'aborted' : 'landed'} for ${ticket}`);
          return { content: [{ type: 'text', text: 'sent' }] };
        },
      );
      await server.connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok));
  const { port } = http.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/mcp`),
    async close() {
      for (const t of transports.values()) await t.close();
      http.closeAllConnections();
      await new Promise((ok) => http.close(ok));
    },
  };
}
