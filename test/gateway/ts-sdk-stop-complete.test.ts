/* eslint-disable @typescript-eslint/no-explicit-any -- answers are asserted field by field */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MCP_HALTED_ERROR_CODE } from '../../src/gateway/index.js';
import { EffectStatus } from '../../src/ledger/index.js';
import { gatewayEnv, until, type GatewayEnv } from './harness.js';
// @ts-expect-error: a plain ES module (it also runs alone as the stdio server), no types
import { serveHttp } from '../adapters/mcp/mcp-test-server.mjs';

/** What the upstream MCP server recorded, with the wall-clock time this process saw it. */
interface ServerEvent {
  readonly type: 'call' | 'landed' | 'cancelled' | 'progress';
  readonly tool: string;
  readonly reason?: string;
  readonly wall: number;
}

/** How long the upstream's slow tool runs before it lands, unless it is cancelled. */
const TOOL_MS = 1500;

let events: ServerEvent[];
let http: { url: URL; close(): Promise<void> };
let e: GatewayEnv;
let client: Client | undefined;

beforeEach(async () => {
  events = [];
  http = await serveHttp((ev: Omit<ServerEvent, 'wall'>) =>
    events.push({ ...ev, wall: Date.now() }),
  );
  e = await gatewayEnv({ config: { mcp: { upstreams: { web: { url: http.url.href } } } } });
});
afterEach(async () => {
  await client?.close();
  client = undefined;
  await e.close();
  await http.close();
});

describe('KS-15.6.2 (KS-15.3.5) the same with the TypeScript MCP SDK: nothing lands after stop-complete', () => {
  it("a halt with wait while the SDK client's call is in flight: stop-complete counts the gateway, the client gets KS_ABORTED naming the flip, the upstream records the cancel and no landing after completeAt", async () => {
    client = new Client({ name: 'ks-ts-sdk', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${e.gw.url}/mcp`)));
    const call = client
      .callTool({
        name: 'web__slow',
        arguments: { ms: TOOL_MS },
        _meta: { 'dev.killswitch/lineage': { tenant: 'acme', runPath: ['root-1'] } },
      })
      .then(
        (r) => ({ ok: r }),
        (x: unknown) => ({ err: x }),
      );
    await until(() => events.some((x) => x.type === 'call'), 5000, 'the upstream call');
    const callAt = events.find((x) => x.type === 'call')!.wall;

    // The flip's answer is its stop-complete: the gateway acknowledged once the call was cut.
    const f = await e.halt({ tenant: 'acme' }, 'stop the ts agent', { wait: 5000 });
    expect(f.fleet.complete).toBe(true);
    expect(f.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
    expect(f.fleet.unenforced ?? []).toEqual([]);
    const completeAt = Date.parse(f.fleet.completeAt);
    expect(Number.isFinite(completeAt)).toBe(true);

    const out = (await call) as { ok?: unknown; err?: unknown };
    expect(out.ok).toBeUndefined();
    const err = out.err as McpError;
    expect(err).toBeInstanceOf(McpError);
    expect(err.code).toBe(MCP_HALTED_ERROR_CODE);
    expect(err.data).toMatchObject({
      code: 'KS_ABORTED',
      flip: { seq: f.flip.seq, level: 'tenant', reason: 'stop the ts agent' },
    });
    expect(err.message).toContain(`flip #${f.flip.seq}`);

    // Let the tool's own time run out (it would land then, had the call not been cut), and more.
    const landBy = callAt + TOOL_MS + 500;
    await new Promise((r) => setTimeout(r, Math.max(0, landBy - Date.now())));
    const landed = events.filter((x) => x.type === 'landed');
    expect(landed.filter((x) => x.wall >= completeAt)).toEqual([]);
    expect(landed).toEqual([]);
    // The upstream saw the cancel, with the gateway's fixed reason.
    expect(events.filter((x) => x.type === 'cancelled').map((x) => x.reason)).toEqual([
      'cancelled by the kill switch',
    ]);
    const [entry] = await e.ledger.entries();
    expect(entry!.status).toBe(EffectStatus.ABORTED);
    expect(entry!.history.find((h) => h.status === EffectStatus.ABORTED)!.flipSeq).toBe(f.flip.seq);
  }, 30_000);
});

describe('KS-15.6.3 (KS-15.2.4) the same with the TypeScript openai SDK streaming: nothing lands after stop-complete', () => {
  it('a halt with wait mid-stream: the SDK raises APIError naming the flip, no chunk reaches it after completeAt, the upstream stream is cancelled and never completes', async () => {
    const llmEnv = await gatewayEnv({ tokenIntervalMs: 20 });
    try {
      const sdk = new OpenAI({
        apiKey: 'sk-ts-secret-0123',
        baseURL: `${llmEnv.gw.url}/v1`,
        maxRetries: 0,
        defaultHeaders: { 'x-killswitch-tenant': 'acme' },
      });
      const TOKENS = 60; // 1.2 s of streaming at 20 ms a token, had it not been cut
      const startedAt = Date.now();
      const stream = await sdk.chat.completions.create({
        model: 'slow-1',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: TOKENS,
        stream: true,
      });
      const chunks: number[] = [];
      const consumed = (async () => {
        try {
          for await (const c of stream) if (c.choices[0]?.delta?.content) chunks.push(Date.now());
        } catch (x) {
          return x;
        }
        return undefined;
      })();
      await until(() => chunks.length >= 3, 5000, 'three streamed chunks');
      const f = await llmEnv.halt({ tenant: 'acme' }, 'stop the ts stream', { wait: 5000 });
      expect(f.fleet.complete).toBe(true);
      expect(f.fleet.acknowledged.map((a: any) => a.workerId)).toEqual(['gateway-1']);
      const completeAt = Date.parse(f.fleet.completeAt);
      expect(Number.isFinite(completeAt)).toBe(true);

      const err = await consumed;
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as Error).message).toContain(`flip #${f.flip.seq} at level tenant`);
      expect((err as Error).message).toContain('stop the ts stream');
      // Past the time the whole answer would have taken: nothing landed after stop-complete.
      await new Promise((r) =>
        setTimeout(r, Math.max(0, startedAt + TOKENS * 20 + 500 - Date.now())),
      );
      expect(chunks.filter((t) => t > completeAt)).toEqual([]);
      expect(chunks.length).toBeLessThan(TOKENS);
      expect(llmEnv.llm.stats()).toMatchObject({ started: 1, completed: 0, cancelled: 1, open: 0 });
      const [entry] = await llmEnv.ledger.entries();
      expect(entry!.status).toBe(EffectStatus.ABORTED);
      expect(entry!.history.find((h) => h.status === EffectStatus.ABORTED)!.flipSeq).toBe(
        f.flip.seq,
      );
    } finally {
      await llmEnv.close();
    }
  }, 30_000);
});
