/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import { parseGatewayConfig, type GatewayConfigInput } from '../../src/gateway/index.js';
import { gatewayEnv, type GatewayEnv } from './harness.js';
// @ts-expect-error: a plain ES module (it also runs alone as the stdio server), no types
import { serveHttp } from '../adapters/mcp/mcp-test-server.mjs';

const sha = (t: string) => createHash('sha256').update(t).digest('hex');
const AGENTS = 'agents-token-0123456789';
const OTHER = 'other-token-0123456789';

let e: GatewayEnv | undefined;
let http: { url: URL; close(): Promise<void> } | undefined;
let events: any[] = [];
const clients: Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  await e?.close();
  await http?.close();
  e = http = undefined;
});

async function env(mcp: Partial<NonNullable<GatewayConfigInput['mcp']>>) {
  events = [];
  http = await serveHttp((ev: any) => events.push(ev));
  e = await gatewayEnv({
    config: { mcp: { upstreams: { web: { url: http!.url.href } }, ...mcp } },
  });
  return e;
}

/** One raw Streamable HTTP POST to the gateway's /mcp. */
async function post(body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${e!.gw.url}/mcp`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, json: text === '' ? undefined : JSON.parse(text) };
}

const init = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'raw', version: '1' },
  },
};

async function connect(headers: Record<string, string>): Promise<Client> {
  const c = new Client({ name: 'auth-test', version: '1' });
  await c.connect(
    new StreamableHTTPClientTransport(new URL(`${e!.gw.url}/mcp`), { requestInit: { headers } }),
  );
  clients.push(c);
  return c;
}

describe('KS-15.3.7 the MCP endpoint asks for a bearer token when mcp.auth is configured', () => {
  const auth = {
    tokens: [
      { name: 'agents', sha256: sha(AGENTS) },
      { name: 'other', sha256: sha(OTHER) },
    ],
  };

  it('no token or a wrong one: 401 with WWW-Authenticate, no session, nothing upstream; the right one works', async () => {
    await env({ auth });
    for (const h of [{}, { authorization: 'Bearer wrong-token' }, { authorization: AGENTS }]) {
      const r = await post(init, h);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(r.headers.get('mcp-session-id')).toBeNull();
      expect(r.json.error.message).toContain('bearer token');
    }
    const bare = new Client({ name: 'no-token', version: '1' });
    await expect(
      bare.connect(new StreamableHTTPClientTransport(new URL(`${e!.gw.url}/mcp`))),
    ).rejects.toThrow();
    expect(events).toEqual([]);

    const client = await connect({ authorization: `Bearer ${AGENTS}` });
    const r = await client.callTool({ name: 'web__refund', arguments: { order: 3 } });
    expect(r.content).toEqual([{ type: 'text', text: 'refunded 3' }]);
    const metrics = await (await fetch(`${e!.gw.url}/metrics`)).text();
    expect(metrics).toMatch(/killswitch_gateway_mcp_rejected_total\{reason="unauthorized"\} [1-9]/);
  });

  it('a session answers only to the token that opened it', async () => {
    await env({ auth });
    const opened = await post(init, { authorization: `Bearer ${AGENTS}` });
    const sid = opened.headers.get('mcp-session-id')!;
    expect(opened.status).toBe(200);
    const list = { jsonrpc: '2.0', id: 2, method: 'tools/list' };
    const other = await post(list, { authorization: `Bearer ${OTHER}`, 'mcp-session-id': sid });
    expect(other.status).toBe(404);
    const own = await post(list, { authorization: `Bearer ${AGENTS}`, 'mcp-session-id': sid });
    expect(own.status).toBe(200);
    expect(own.json.result.tools.length).toBeGreaterThan(0);
  });

  it('a remote bind with an mcp section and no mcp.auth refuses to start, naming mcp.auth', () => {
    const config = {
      workerId: 'gw',
      controlPlane: { urls: ['http://127.0.0.1:1'] },
      listen: { host: '0.0.0.0', allowRemote: true },
      mcp: { upstreams: { web: { url: 'http://127.0.0.1:2/mcp' } } },
    };
    expect(() => parseGatewayConfig(config)).toThrow(
      /mcp\.auth: required when listen\.allowRemote/,
    );
    expect(() =>
      parseGatewayConfig({
        ...config,
        mcp: { ...config.mcp, auth: { tokens: [{ name: 'a', sha256: 'nope' }] } },
      }),
    ).toThrow(/mcp\.auth\.tokens\.0\.sha256: must be the SHA-256 hex digest/);
    expect(
      parseGatewayConfig({ ...config, mcp: { ...config.mcp, auth } }).mcp!.auth!.tokens,
    ).toHaveLength(2);
  });
});

describe('KS-15.3.8 MCP sessions are bounded', () => {
  it('past mcp.maxSessions a new session gets 503 with Retry-After, the open ones keep working; a closed one frees a place', async () => {
    await env({ maxSessions: 2 });
    const a = await connect({});
    const b = await connect({});
    const r = await post(init);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('5');
    expect(r.json.error.message).toContain('mcp.maxSessions');
    expect(
      (await a.callTool({ name: 'web__refund', arguments: { order: 1 } })).content,
    ).toHaveLength(1);
    expect((await b.listTools()).tools.length).toBeGreaterThan(0);
    await (b.transport as StreamableHTTPClientTransport).terminateSession();
    const c = await connect({});
    expect((await c.listTools()).tools.length).toBeGreaterThan(0);
    const metrics = await (await fetch(`${e!.gw.url}/metrics`)).text();
    expect(metrics).toMatch(/killswitch_gateway_mcp_sessions 2/);
    expect(metrics).toMatch(/killswitch_gateway_mcp_rejected_total\{reason="session-cap"\} 1/);
  });

  it('a session idle past mcp.sessionIdleMs is closed (its id is unknown after), one with a call in flight is not', async () => {
    await env({ sessionIdleMs: 200 });
    const idle = (await post(init)).headers.get('mcp-session-id')!;
    const busy = await connect({});
    const slow = busy.callTool({ name: 'web__slow', arguments: { ms: 1200 } });
    await new Promise((r) => setTimeout(r, 900));
    const r = await post(
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { 'mcp-session-id': idle },
    );
    expect(r.status).toBe(404);
    expect((await slow).content).toEqual([{ type: 'text', text: 'slow done' }]);
  });
});
