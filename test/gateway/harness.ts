import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
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
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const m = JSON.parse(text);
      const answer = (result: unknown) => {
        const body = JSON.stringify({ jsonrpc: '2.0', id: m.id, result });
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'raw-1' });
        res.end(body);
      };
      switch (m.method) {
        case 'initialize':
          return answer({
            protocolVersion: '2025-06-18',
            capabilities: { tools: {} },
            serverInfo: { name: 'raw', version: '1' },
          });
        case 'tools/list':
          return answer({ tools: [{ name: 'hang', inputSchema: { type: 'object' } }] });
        case 'tools/call':
          state.calls++;
          // The call's event stream opens at once, as the MCP SDK's does once it registered the
          // call (a cancel sent after this is ordered after the call, KS-15.3.11); no answer ever.
          res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 'raw-1' });
          res.flushHeaders();
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
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    state,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    async close() {
      for (const r of state.open) r.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    },
  };
}
