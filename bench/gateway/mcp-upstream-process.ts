/**
 * The MCP upstream of bench:gateway, in a process of its own (forked with an IPC channel), as a
 * real upstream is: the official SDK's Streamable HTTP server with a no-op tool and a slow tool.
 * It reports on the system clock (epoch ms, sub-ms) (epoch ms, sub-ms, agreeing across processes) when the slow tool
 * started, when the last POST reached its HTTP server (the cancel, during a halt) and when the
 * SDK aborted the tool's signal.
 *
 * IPC: sends `{ type: 'ready', url }`, then `{ type: 'started', at }` and
 * `{ type: 'cancelled', at, postAt }` per slow call; `{ type: 'stop' }` closes it.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { systemClock } from '../../src/internal/clock.js';

const send = (m: unknown): void => {
  if (process.connected) process.send?.(m);
};

/**
 * The bench's MCP upstream server: listens on loopback and reports to `report` (IPC from the
 * forked process; a callback when bench:gateway runs one in its own process to compare).
 */
export async function startBenchMcpUpstream(
  report: (m: unknown) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  let postAt = 0;
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const make = (): McpServer => {
    const s = new McpServer({ name: 'bench-upstream', version: '1.0.0' });
    s.registerTool('noop', { inputSchema: { i: z.number() } }, async ({ i }) => ({
      content: [{ type: 'text', text: String(i) }],
    }));
    s.registerTool('wait', { inputSchema: { ms: z.number() } }, async ({ ms }, extra) => {
      report({ type: 'started', at: systemClock.now() });
      await new Promise<void>((res) => {
        const t = setTimeout(res, ms);
        extra.signal.addEventListener('abort', () => {
          report({ type: 'cancelled', at: systemClock.now(), postAt });
          clearTimeout(t);
          res();
        });
      });
      return { content: [{ type: 'text', text: 'done' }] };
    });
    return s;
  };
  const http = createServer(async (req, res) => {
    if (req.method === 'POST') postAt = systemClock.now();
    const sid = req.headers['mcp-session-id'];
    let t = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (t === undefined) {
      const nt: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, nt);
        },
      });
      await make().connect(nt);
      t = nt;
    }
    await t.handleRequest(req, res);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    async close() {
      for (const t of transports.values()) await t.close();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

// Forked (bench:gateway's upstream in a process of its own): serve and report over IPC.
if (process.send !== undefined) {
  const up = await startBenchMcpUpstream(send);
  send({ type: 'ready', url: up.url });
  process.on('message', (m: { type?: string }) => {
    if (m.type !== 'stop') return;
    void up.close().then(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
}
