/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EFFECT_KEY_META, MCP_HALTED_ERROR_CODE } from '../../src/gateway/index.js';
import { EffectStatus } from '../../src/ledger/index.js';
import { gatewayEnv, until, type GatewayEnv } from './harness.js';
// @ts-expect-error: a plain ES module (it also runs alone as the stdio server), no types
import { serveHttp } from '../adapters/mcp/mcp-test-server.mjs';

interface ServerEvent {
  readonly type: 'call' | 'landed' | 'cancelled' | 'progress';
  readonly tool: string;
  readonly meta?: Record<string, any>;
  readonly reason?: string;
}

const UPSTREAM = fileURLToPath(new URL('./mcp-upstream.mjs', import.meta.url));

let dir: string;
let httpEvents: ServerEvent[];
let http: { url: URL; close(): Promise<void> };
let e: GatewayEnv;
const clients: Client[] = [];

/** What the stdio upstream process recorded so far. */
function stdioEvents(): ServerEvent[] {
  try {
    return readFileSync(join(dir, 'events.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as ServerEvent);
  } catch {
    return [];
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ks-gw-mcp-'));
  httpEvents = [];
  http = await serveHttp((ev: ServerEvent) => httpEvents.push(ev));
  e = await gatewayEnv({
    config: {
      mcp: {
        upstreams: {
          web: { url: http.url.href },
          proc: { command: process.execPath, args: [UPSTREAM, join(dir, 'events.jsonl')] },
        },
      },
    },
  });
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await e.close();
  await http.close();
  rmSync(dir, { recursive: true, force: true });
});

async function connect(headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: 'ks-gw-test', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${e.gw.url}/mcp`), { requestInit: { headers } }),
  );
  clients.push(client);
  return client;
}

const lineage = (tenant: string, runPath: string[] = []) => ({
  'dev.killswitch/lineage': { tenant, runPath },
});

describe('KS-15.3.1 the MCP gateway fronts stdio and HTTP upstreams over Streamable HTTP', () => {
  it('tools/list passes through under per-upstream prefixes; a call lands, recorded as upstream.tool', async () => {
    const client = await connect();
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual([
      'proc__refund',
      'proc__report',
      'proc__slow',
      'web__refund',
      'web__report',
      'web__slow',
    ]);
    const r = await client.callTool({
      name: 'web__refund',
      arguments: { order: 7 },
      _meta: lineage('acme', ['root-1', 'run-1']),
    });
    expect(r.content).toEqual([{ type: 'text', text: 'refunded 7' }]);
    // The lineage travels on to the upstream.
    expect(httpEvents.find((x) => x.type === 'call')!.meta!['dev.killswitch/lineage']).toEqual({
      tenant: 'acme',
      runPath: ['root-1', 'run-1'],
    });
    const r2 = await client.callTool({ name: 'proc__refund', arguments: { order: 8 } });
    expect(r2.content).toEqual([{ type: 'text', text: 'refunded 8' }]);
    const entries = await e.ledger.entries();
    expect(entries.map((x) => [x.capability, x.status])).toEqual([
      ['web.refund', EffectStatus.LANDED],
      ['proc.refund', EffectStatus.LANDED],
    ]);
    expect(entries[0]!.context).toMatchObject({ tenant: 'acme', runId: 'run-1' });
    // KS-15.3.10 each upstream gets the call's key in the gateway's ledger.
    expect(httpEvents.find((x) => x.type === 'call')!.meta![EFFECT_KEY_META]).toBe(entries[0]!.key);
    const procCall = stdioEvents().find((x) => x.type === 'call')!;
    expect(procCall.meta![EFFECT_KEY_META]).toBe(entries[1]!.key);
  });
});

describe('KS-15.3.4 a refused call gets a JSON-RPC error with a stable code and the flip in data', () => {
  it('capability, tenant (from headers), run and global halts refuse; nothing reaches the upstream', async () => {
    const client = await connect({ 'x-killswitch-tenant': 'globex' });
    const refused = async (params: any): Promise<McpError> => {
      const err = await client.callTool(params).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(err).toBeInstanceOf(McpError);
      expect((err as McpError).code).toBe(MCP_HALTED_ERROR_CODE);
      return err as McpError;
    };
    const cap = await e.halt({ capability: 'web.refund' }, 'refunds off', { wait: 5000 });
    let err = await refused({ name: 'web__refund', arguments: { order: 1 } });
    expect(err.data).toMatchObject({
      code: 'KS_HALTED',
      cause: 'halted',
      flip: { seq: cap.flip.seq, level: 'capability', reason: 'refunds off' },
    });
    expect(err.message).toContain(`flip #${cap.flip.seq} at level capability`);
    expect(httpEvents.filter((x) => x.type === 'call')).toHaveLength(0);
    // proc.refund is another capability: it passes.
    await client.callTool({ name: 'proc__refund', arguments: { order: 2 } });

    const ten = await e.halt({ tenant: 'globex' }, 'tenant off', { wait: 5000 });
    err = await refused({ name: 'proc__refund', arguments: { order: 3 } });
    expect((err.data as any).flip).toMatchObject({ seq: ten.flip.seq, level: 'tenant' });
    // _meta lineage wins over headers: another tenant passes.
    await client.callTool({
      name: 'proc__refund',
      arguments: { order: 4 },
      _meta: lineage('initech'),
    });

    const run = await e.halt({ runId: 'run-9' }, 'run off', { wait: 5000 });
    err = await refused({
      name: 'proc__report',
      arguments: { steps: 1 },
      _meta: lineage('initech', ['root-9', 'run-9']),
    });
    expect((err.data as any).flip).toMatchObject({
      seq: run.flip.seq,
      level: 'run',
      reason: 'run off',
    });

    const all = await e.halt({}, 'all off', { wait: 5000 });
    err = await refused({
      name: 'proc__refund',
      arguments: { order: 5 },
      _meta: lineage('initech'),
    });
    expect((err.data as any).flip).toMatchObject({ seq: all.flip.seq, level: 'global' });
    expect(stdioEvents().filter((x) => x.type === 'call')).toHaveLength(2);
    const refusedEntries = await e.ledger.entries({ status: EffectStatus.REFUSED });
    expect(refusedEntries.map((x) => x.last.flipSeq)).toEqual([
      cap.flip.seq,
      ten.flip.seq,
      run.flip.seq,
      all.flip.seq,
    ]);
  });
});

describe('KS-15.3.5 a matching halt cancels the call in flight upstream and answers the client at once', () => {
  for (const upstream of ['web', 'proc'] as const) {
    it(`${upstream === 'web' ? 'HTTP' : 'stdio'} upstream: notifications/cancelled reaches it, the client gets KS_ABORTED`, async () => {
      const events = () => (upstream === 'web' ? httpEvents : stdioEvents());
      const client = await connect();
      const call = client
        .callTool({ name: `${upstream}__slow`, arguments: { ms: 10_000 }, _meta: lineage('acme') })
        .then(
          () => undefined,
          (x: unknown) => x,
        );
      await until(
        () => events().some((x) => x.type === 'call'),
        5000,
        'the upstream to start the call',
      );
      const started = Date.now();
      const f = await e.halt({ tenant: 'acme' }, 'stop acme');
      const err = (await call) as McpError;
      expect(Date.now() - started).toBeLessThan(2000);
      expect(err).toBeInstanceOf(McpError);
      expect(err.code).toBe(MCP_HALTED_ERROR_CODE);
      expect(err.data).toMatchObject({
        code: 'KS_ABORTED',
        flip: { seq: f.flip.seq, level: 'tenant', reason: 'stop acme' },
      });
      await until(
        () => events().some((x) => x.type === 'cancelled'),
        5000,
        'the upstream to see the cancel',
      );
      const cancelled = events().find((x) => x.type === 'cancelled')!;
      // A fixed reason: the flip's text (tenant names, incident notes) does not reach a third party.
      expect(cancelled.reason).toBe('cancelled by the kill switch');
      expect(events().some((x) => x.type === 'landed')).toBe(false);
      const [entry] = await e.ledger.entries();
      expect(entry!.history.find((h) => h.status === EffectStatus.ABORTED)!.flipSeq).toBe(
        f.flip.seq,
      );
    });
  }

  it('KS-15.3.6 a client that cancels (notifications/cancelled) cancels the call upstream too', async () => {
    const client = await connect();
    const ac = new AbortController();
    const call = client
      .callTool({ name: 'web__slow', arguments: { ms: 10_000 } }, undefined, { signal: ac.signal })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    await until(
      () => httpEvents.some((x) => x.type === 'call'),
      5000,
      'the upstream to start the call',
    );
    ac.abort('user pressed stop');
    await call;
    await until(
      () => httpEvents.some((x) => x.type === 'cancelled'),
      5000,
      'the upstream to see the cancel',
    );
    await until(
      async () => (await e.ledger.entries())[0]?.status === EffectStatus.FAILED,
      5000,
      'the failed record',
    );
  });

  it('KS-15.3.6 a client that closes its request stream cancels the call upstream (2026-07-28 semantics)', async () => {
    // Raw Streamable HTTP: initialize, then a tools/call whose response stream we drop.
    const post = (body: unknown, sid?: string, signal?: AbortSignal) =>
      fetch(`${e.gw.url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(sid !== undefined
            ? { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' }
            : {}),
        },
        body: JSON.stringify(body),
        ...(signal !== undefined ? { signal } : {}),
      });
    const init = await post({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'raw', version: '1' },
      },
    });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    await (await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sid)).text();
    const ac = new AbortController();
    const pending = post(
      {
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'web__slow', arguments: { ms: 10_000 } },
      },
      sid,
      ac.signal,
    ).catch(() => undefined);
    await until(
      () => httpEvents.some((x) => x.type === 'call'),
      5000,
      'the upstream to start the call',
    );
    ac.abort();
    await pending;
    await until(
      () => httpEvents.some((x) => x.type === 'cancelled'),
      5000,
      'the upstream to see the cancel',
    );
  });
});

describe('KS-15.3.1 raw forwarding keeps the protocol whole', () => {
  for (const upstream of ['web', 'proc'] as const) {
    it(`${upstream === 'web' ? 'HTTP' : 'stdio'} upstream: progress is relayed to the client under its own token; ping answers`, async () => {
      const client = await connect();
      await client.ping();
      const seen: number[] = [];
      const r = await client.callTool(
        { name: `${upstream}__report`, arguments: { steps: 3 } },
        undefined,
        {
          onprogress: (p) => seen.push(p.progress),
        },
      );
      expect(r.content).toEqual([{ type: 'text', text: '3 steps' }]);
      expect(seen).toEqual([1, 2, 3]);
    });
  }

  it('an unknown tool, a method the gateway does not serve and a request without a session are refused', async () => {
    const client = await connect();
    const err = await client
      .callTool({ name: 'nowhere__x', arguments: {} })
      .catch((x: unknown) => x);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32602);
    const err2 = await client.listResources().catch((x: unknown) => x);
    expect((err2 as McpError).code).toBe(-32601);
    const raw = await fetch(`${e.gw.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as any).error.message).toContain('initialize');
  });
});
