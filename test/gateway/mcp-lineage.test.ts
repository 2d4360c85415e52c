/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MCP_HALTED_ERROR_CODE } from '../../src/gateway/index.js';
import { gatewayEnv, type GatewayEnv } from './harness.js';
// @ts-expect-error: a plain ES module (it also runs alone as the stdio server), no types
import { serveHttp } from '../adapters/mcp/mcp-test-server.mjs';

interface ServerEvent {
  readonly type: 'call' | 'landed' | 'cancelled' | 'progress';
  readonly tool: string;
  readonly meta?: Record<string, any>;
}

const LINEAGE = 'dev.killswitch/lineage';
let events: ServerEvent[] = [];
let http: { url: URL; close(): Promise<void> };
let e: GatewayEnv;
const clients: Client[] = [];

beforeAll(async () => {
  http = await serveHttp((ev: ServerEvent) => events.push(ev));
  // A separator, a capability template and defaults of its own, to see each one used.
  e = await gatewayEnv({
    config: {
      defaults: { tenant: 'default-co', feature: 'support' },
      mcp: {
        separator: '--',
        capability: 'mcp.{upstream}.{tool}',
        upstreams: { web: { url: http.url.href } },
      } as any,
    },
  });
});
afterAll(async () => {
  for (const c of clients.splice(0)) await c.close();
  await e?.close();
  await http?.close();
});

async function connect(headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: 'ks-gw-lineage', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${e.gw.url}/mcp`), { requestInit: { headers } }),
  );
  clients.push(client);
  return client;
}

/** Calls web--refund and answers the ledger entry and the upstream's view of the call. */
async function refund(client: Client, order: number, meta?: Record<string, unknown>) {
  events = [];
  const r = await client.callTool({
    name: 'web--refund',
    arguments: { order },
    ...(meta !== undefined ? { _meta: meta } : {}),
  });
  expect(r.content).toEqual([{ type: 'text', text: `refunded ${order}` }]);
  const entries = await e.ledger.entries();
  return { entry: entries.at(-1)!, upstream: events.find((x) => x.type === 'call')! };
}

describe('KS-15.3.2 tools/list passes every upstream tool through under <upstream><separator>', () => {
  it('the configured separator prefixes every tool; a prefixed call reaches that tool', async () => {
    const client = await connect();
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(['web--refund', 'web--report', 'web--slow']);
    const { upstream } = await refund(client, 1);
    expect(upstream.tool).toBe('refund');
  });
});

describe('KS-15.3.3 a tools/call is a guarded effect: capability from the template; context from _meta, else headers, else defaults', () => {
  it('defaults, then headers over them, then _meta over both; the lineage the call was evaluated under goes on to the upstream', async () => {
    const plain = await connect();
    let r = await refund(plain, 2);
    expect(r.entry.capability).toBe('mcp.web.refund');
    expect(r.entry.context).toMatchObject({ tenant: 'default-co', feature: 'support' });
    // The defaults' lineage goes on to the upstream too.
    expect(r.upstream.meta?.[LINEAGE]).toEqual({
      tenant: 'default-co',
      feature: 'support',
      runPath: [],
    });

    const headed = await connect({
      'x-killswitch-tenant': 'globex',
      'x-killswitch-run-path': 'root-h,run-h',
    });
    r = await refund(headed, 3);
    expect(r.entry.context).toMatchObject({ tenant: 'globex', feature: 'support', runId: 'run-h' });
    // The lineage read from the headers (over the defaults) goes on to the upstream in _meta.
    expect(r.upstream.meta?.[LINEAGE]).toEqual({
      tenant: 'globex',
      feature: 'support',
      runPath: ['root-h', 'run-h'],
    });

    r = await refund(headed, 4, { [LINEAGE]: { tenant: 'initech', runPath: ['root-m', 'run-m'] } });
    expect(r.entry.context).toMatchObject({ tenant: 'initech', runId: 'run-m' });
    expect(r.upstream.meta?.[LINEAGE]).toMatchObject({
      tenant: 'initech',
      runPath: ['root-m', 'run-m'],
    });
  });

  it('a halt on the default feature refuses a call that names no context; an unreadable lineage is InvalidParams and reaches nothing', async () => {
    const client = await connect();
    events = [];
    const bad = await client
      .callTool({
        name: 'web--refund',
        arguments: { order: 5 },
        _meta: { [LINEAGE]: { tenant: 7, runPath: 'not-a-path' } },
      })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(bad).toBeInstanceOf(McpError);
    expect((bad as McpError).code).toBe(ErrorCode.InvalidParams);
    expect(events.filter((x) => x.type === 'call')).toEqual([]);

    const { flip } = await e.halt({ feature: 'support' }, 'support bot loops', { wait: 5000 });
    const refused = await client.callTool({ name: 'web--refund', arguments: { order: 6 } }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(refused).toBeInstanceOf(McpError);
    expect((refused as McpError).code).toBe(MCP_HALTED_ERROR_CODE);
    expect((refused as McpError).data).toMatchObject({
      flip: { seq: flip.seq, level: 'feature' },
    });
    expect(events.filter((x) => x.type === 'call')).toEqual([]);
    await e.flip({
      action: 'resume',
      selector: { feature: 'support' },
      reason: 'fixed',
      release: 'v1',
      wait: 5000,
    });
  });
});
