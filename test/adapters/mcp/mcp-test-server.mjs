// A real MCP server (McpServer from @modelcontextprotocol/sdk) for the MCP adapter's tests. In
// process it is served over Streamable HTTP; run as `node mcp-test-server.mjs` it serves stdio and
// writes what it sees (calls, the `_meta` they carried, cancellations) to stderr as JSON lines.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/**
 * The test server's tools. `record(event)` receives { type: 'call' | 'landed' | 'cancelled' |
 * 'progress', tool, meta?, reason?, at }.
 */
export function createTestServer(record) {
  const server = new McpServer({ name: 'ks-test-server', version: '1.0.0' });
  const now = () => performance.now();
  server.registerTool(
    'refund',
    { description: 'refunds an order', inputSchema: { order: z.number() } },
    async ({ order }, extra) => {
      record({ type: 'call', tool: 'refund', meta: extra._meta, at: now() });
      record({ type: 'landed', tool: 'refund', order, at: now() });
      return { content: [{ type: 'text', text: `refunded ${order}` }] };
    },
  );
  server.registerTool(
    'slow',
    { description: 'takes up to 5 s; honours cancellation', inputSchema: { ms: z.number() } },
    async ({ ms }, extra) => {
      record({ type: 'call', tool: 'slow', meta: extra._meta, at: now() });
      await new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        extra.signal.addEventListener('abort', () => {
          clearTimeout(t);
          record({
            type: 'cancelled',
            tool: 'slow',
            reason: String(extra.signal.reason),
            at: now(),
          });
          resolve();
        });
      });
      if (!extra.signal.aborted) record({ type: 'landed', tool: 'slow', at: now() });
      return { content: [{ type: 'text', text: 'slow done' }] };
    },
  );
  server.registerTool(
    'report',
    { description: 'streams progress, then answers', inputSchema: { steps: z.number() } },
    async ({ steps }, extra) => {
      record({ type: 'call', tool: 'report', meta: extra._meta, at: now() });
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        if (extra.signal.aborted) {
          record({
            type: 'cancelled',
            tool: 'report',
            reason: String(extra.signal.reason),
            at: now(),
          });
          return { content: [{ type: 'text', text: 'cut' }] };
        }
        await new Promise((r) => setTimeout(r, 10));
        if (token !== undefined)
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: i, total: steps },
          });
        record({ type: 'progress', tool: 'report', at: now() });
      }
      record({ type: 'landed', tool: 'report', at: now() });
      return { content: [{ type: 'text', text: `${steps} steps` }] };
    },
  );
  return server;
}

/** Serves the test server over Streamable HTTP (stateful sessions) on 127.0.0.1, port 0. */
export async function serveHttp(record) {
  const transports = new Map();
  const http = createServer(async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    let transport = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (transport === undefined) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      await createTestServer(record).connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address();
  return {
    url: new URL(`http://127.0.0.1:${port}/mcp`),
    async close() {
      for (const t of transports.values()) await t.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const server = createTestServer((event) => process.stderr.write(`${JSON.stringify(event)}\n`));
  await server.connect(new StdioServerTransport());
}
