import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
/* eslint-disable @typescript-eslint/no-explicit-any -- test helper: answers are asserted field by field */
import { Gateway, type GatewayConfigInput } from '../../src/gateway/index.js';
import { startSlowLlmServer, type SlowLlmServer } from '../../src/drill/servers/slow-llm-server.js';
import type { ControlPlane } from '../../src/server/index.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { TOKENS, call, startTestServer } from '../server/helpers.js';

export { TOKENS, call };

/** A control plane, a slow LLM upstream and a gateway in front of it, all on loopback. */
export interface GatewayEnv {
  readonly cp: ControlPlane;
  readonly llm: SlowLlmServer;
  readonly gw: Gateway;
  readonly ledger: MemorySideEffectLedger;
  /** Appends a flip through the control plane's API as admin; answers its body. */
  flip(body: Record<string, unknown>): Promise<any>;
  halt(
    selector: Record<string, string>,
    reason?: string,
    extra?: Record<string, unknown>,
  ): Promise<any>;
  close(): Promise<void>;
}

export const silent = { info: () => undefined, warn: () => undefined };

export async function gatewayEnv(
  options: {
    staleAfterMs?: number;
    tokens?: number;
    tokenIntervalMs?: number;
    config?: Partial<GatewayConfigInput>;
    /** More `llm` settings beside the upstream URLs (e.g. `keyContext`). */
    llm?: Record<string, unknown>;
  } = {},
): Promise<GatewayEnv> {
  const staleAfterMs = options.staleAfterMs ?? 1500;
  const { cp } = await startTestServer({ staleAfterMs, leaseMarginMs: 100, heartbeatMs: 200 });
  const llm = await startSlowLlmServer({
    tokens: options.tokens ?? 3,
    tokenIntervalMs: options.tokenIntervalMs ?? 5,
  });
  const ledger = new MemorySideEffectLedger();
  let gw: Gateway;
  try {
    gw = await Gateway.start({
      config: {
        workerId: 'gateway-1',
        controlPlane: { urls: [cp.url], token: TOKENS.worker, staleAfterMs, heartbeatMs: 200 },
        listen: { port: 0 },
        llm: { openai: llm.url, anthropic: llm.url, ...options.llm },
        ...options.config,
      },
      ledger,
      logger: silent,
    });
    await gw.waitFresh();
  } catch (err) {
    await llm.close();
    await cp.close();
    throw err;
  }
  const flip = async (body: Record<string, unknown>) => {
    const r = await call(cp, 'POST', '/v1/flips', { token: TOKENS.admin, body });
    if (r.status !== 201) throw new Error(`flip answered ${r.status}: ${JSON.stringify(r.json)}`);
    return r.json;
  };
  return {
    cp,
    llm,
    gw,
    ledger,
    flip,
    halt: (selector, reason = 'incident 42', extra = {}) =>
      flip({ action: 'halt', selector, reason, ...extra }),
    async close() {
      await gw.close();
      await llm.close();
      await cp.close();
    },
  };
}

/** Polls until `fn` is true (or throws after `ms`). */
/** An MCP SDK client connected to the gateway's `/mcp` endpoint. */
export async function mcpClient(e: GatewayEnv, name: string): Promise<Client> {
  const client = new Client({ name, version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${e.gw.url}/mcp`)));
  return client;
}

/**
 * Calls `tool` (no arguments) as a root run of tenant acme, the lineage the gateway reads from
 * `_meta`; settles with the result, or with the error the call ends with (never rejects).
 */
export function callAsAcme(client: Client, tool: string): Promise<unknown> {
  return client
    .callTool({
      name: tool,
      arguments: {},
      _meta: { 'dev.killswitch/lineage': { tenant: 'acme', runPath: [] } },
    })
    .catch((x: unknown) => x);
}

export async function until(
  fn: () => boolean | Promise<boolean>,
  ms = 5000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Options of {@link rawMcpUpstream}. */
export interface RawMcpUpstreamOptions {
  /** The server's name and its session id's prefix (`<name>-1`). */
  readonly name: string;
  /** Names of the tools `tools/list` answers. */
  readonly tools: readonly string[];
  /** Answers held open (event streams, calls never answered): destroyed by `close()`. */
  readonly open: Set<ServerResponse>;
  /**
   * Every message but `initialize` and `tools/list`: the test decides what the upstream does
   * with a call, a ping or a cancel. It must answer `res`; `answer` sends a JSON-RPC result.
   */
  handle(
    m: any,
    res: ServerResponse,
    answer: (result: unknown) => void,
    req: IncomingMessage,
  ): void;
  /** Status for a request that is not a POST (a session's DELETE). @default 405 */
  readonly notPostStatus?: number;
  /** Called with the server before it listens (timeouts, connection listeners). */
  readonly setup?: (http: Server) => void;
}

/**
 * The skeleton of a Streamable HTTP MCP upstream written by hand (protocol 2025-06-18), so a test
 * decides what it does with a call or a cancel: it reads each POST's JSON-RPC message, answers
 * `initialize` and `tools/list`, and hands every other message to `handle`.
 */
export async function rawMcpUpstream(o: RawMcpUpstreamOptions) {
  const session = `${o.name}-1`;
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(o.notPostStatus ?? 405).end();
      const m = JSON.parse(text);
      const answer = (result: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': session });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
      };
      switch (m.method) {
        case 'initialize':
          return answer({
            protocolVersion: '2025-06-18',
            capabilities: { tools: {} },
            serverInfo: { name: o.name, version: '1' },
          });
        case 'tools/list':
          return answer({
            tools: o.tools.map((name) => ({ name, inputSchema: { type: 'object' } })),
          });
        default:
          return o.handle(m, res, answer, req);
      }
    });
  });
  o.setup?.(http);
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    /** Opens a call's event stream (headers only), as the MCP SDK does once it registered it. */
    openStream(res: ServerResponse): void {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': session });
      res.flushHeaders();
    },
    async close() {
      for (const r of o.open) r.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}

/**
 * A Streamable HTTP MCP upstream written by hand, so the test decides what it does with a cancel:
 * its one tool opens its event stream and never answers, and `notifications/cancelled` is refused
 * (503) while `refuse` is set,
 * so a halt that cuts a call stays unenforced at the gateway until the cancel is taken.
 */
export async function hangingMcpUpstream() {
  const state = {
    refuse: true,
    calls: 0,
    refusedCancels: 0,
    cancels: [] as any[],
    open: new Set<ServerResponse>(),
  };
  const up = await rawMcpUpstream({
    name: 'raw',
    tools: ['hang'],
    open: state.open,
    handle(m, res) {
      switch (m.method) {
        case 'tools/call':
          state.calls++;
          // The call's event stream opens at once, as the MCP SDK's does once it registered the
          // call (a cancel sent after this is ordered after the call, KS-15.3.11); no answer ever.
          up.openStream(res);
          state.open.add(res);
          return;
        case 'notifications/cancelled':
          if (state.refuse) {
            state.refusedCancels++;
            return void res.writeHead(503).end('busy');
          }
          state.cancels.push(m.params);
          return void res.writeHead(202).end();
        default:
          return void res.writeHead(202).end();
      }
    },
  });
  return { state, url: up.url, close: () => up.close() };
}
