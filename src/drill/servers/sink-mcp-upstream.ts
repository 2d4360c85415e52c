import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EFFECT_KEY_META } from '../../gateway/gateway-refusal.js';
import { systemClock } from '../../internal/clock.js';
import { closeServer } from './effect-sink.js';

/** Options of {@link startSinkMcpUpstream}. */
export interface SinkMcpUpstreamOptions {
  /** The effect sink the tools' effects land in (`POST <sinkUrl>/effects`). */
  readonly sinkUrl: string;
  /** The tools it offers, one per capability name (`email.send`, ...). */
  readonly tools: readonly string[];
  /** Work a tool does before its effect leaves (cancellable), ms. */
  readonly toolLatencyMs: number;
  /** The worker id the effects are sent under (the gateway's). */
  readonly workerId: string;
}

/** A running upstream. */
export interface SinkMcpUpstream {
  /** Its Streamable HTTP endpoint (`.../mcp`). */
  readonly url: string;
  /** Calls cancelled by `notifications/cancelled` before their effect left. */
  readonly cancelled: number;
  close(): Promise<void>;
}

interface Call {
  readonly timer: NodeJS.Timeout;
  readonly done: () => void;
}

/**
 * The MCP upstream of the gateway drill (KS-9.7): a Streamable HTTP MCP server, in raw JSON-RPC,
 * whose tools stand for real side effects: each waits `toolLatencyMs` (the tool's work), then
 * posts its effect to the effect sink under the gateway's ledger key (`_meta` KS-15.3.10) and the
 * lineage the call carried, and answers. A `notifications/cancelled` that arrives before the
 * effect left cancels it (it never reaches the sink), as an upstream honouring MCP cancellation
 * does; an effect already on its way lands.
 */
export async function startSinkMcpUpstream(
  options: SinkMcpUpstreamOptions,
): Promise<SinkMcpUpstream> {
  const calls = new Map<string, Call>();
  /**
   * Cancels that arrived before their call (the cancel and the call travel on two connections, so
   * the cancel can be read first): kept a while, and the call is cancelled when it arrives, as an
   * upstream that honours cancellation must (MCP lets a receiver ignore a cancel for a request it
   * does not know; this one does not).
   */
  const early = new Map<string, NodeJS.Timeout>();
  let cancelled = 0;
  const tools = new Set(options.tools);

  const answer = (res: ServerResponse, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'mcp-session-id': 'drill-upstream',
    });
    res.end(text);
  };

  const call = (res: ServerResponse, id: unknown, params: Record<string, unknown>): void => {
    const name = String(params['name']);
    if (!tools.has(name)) {
      answer(res, { jsonrpc: '2.0', id, error: { code: -32602, message: `no tool ${name}` } });
      return;
    }
    const meta = (params['_meta'] ?? {}) as Record<string, unknown>;
    const lineage = (meta['dev.killswitch/lineage'] ?? {}) as {
      tenant?: string;
      feature?: string;
      runPath?: string[];
    };
    const runPath = Array.isArray(lineage.runPath) ? lineage.runPath : [];
    const key = String(meta[EFFECT_KEY_META] ?? `no-key-${String(id)}`);
    const k = `${typeof id}:${String(id)}`;
    const before = early.get(k);
    if (before !== undefined || res.destroyed) {
      // Cancelled before it was read: by an early cancel, or the caller already closed the stream.
      clearTimeout(before);
      early.delete(k);
      cancelled++;
      if (!res.writableEnded) res.destroy();
      return;
    }
    const timer = setTimeout(() => {
      calls.delete(k);
      const context = {
        ...(lineage.tenant !== undefined ? { tenant: lineage.tenant } : {}),
        ...(lineage.feature !== undefined ? { feature: lineage.feature } : {}),
        ...(runPath.length > 0 ? { runId: runPath[runPath.length - 1], runPath } : {}),
        capability: name,
      };
      const body = JSON.stringify({
        key,
        capability: name,
        workerId: options.workerId,
        context,
        kind: 'gateway',
        attempt: 1,
      });
      fetch(`${options.sinkUrl}/effects`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-drill-sent-at': String(systemClock.now()),
        },
        body,
      })
        .then((r) => r.text())
        .then(
          () =>
            answer(res, { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: key }] } }),
          (err: unknown) =>
            answer(res, {
              jsonrpc: '2.0',
              id,
              error: { code: -32603, message: `effect not sent: ${String(err)}` },
            }),
        );
    }, options.toolLatencyMs);
    calls.set(k, {
      timer,
      done: () => {
        clearTimeout(timer);
        calls.delete(k);
        cancelled++;
        if (!res.writableEnded) res.destroy();
      },
    });
    res.on('close', () => {
      // 2026-07-28 semantics: the caller closing the request stream cancels the call too.
      if (!res.writableFinished) calls.get(k)?.done();
    });
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'DELETE') return void res.writeHead(200).end();
    if (req.method !== 'POST') return void res.writeHead(405).end();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let m: { id?: unknown; method?: string; params?: Record<string, unknown> };
      try {
        m = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof m;
      } catch {
        return void res.writeHead(400).end();
      }
      switch (m.method) {
        case 'initialize':
          return answer(res, {
            jsonrpc: '2.0',
            id: m.id,
            result: {
              protocolVersion: '2025-06-18',
              capabilities: { tools: {} },
              serverInfo: { name: 'drill-sink-tools', version: '1.0.0' },
            },
          });
        case 'tools/list':
          return answer(res, {
            jsonrpc: '2.0',
            id: m.id,
            result: {
              tools: [...tools].map((name) => ({ name, inputSchema: { type: 'object' } })),
            },
          });
        case 'tools/call':
          return call(res, m.id, m.params ?? {});
        case 'ping':
          return answer(res, { jsonrpc: '2.0', id: m.id, result: {} });
        case 'notifications/cancelled': {
          const id = m.params?.['requestId'];
          const k = `${typeof id}:${String(id)}`;
          const c = calls.get(k);
          if (c !== undefined) c.done();
          else if (!early.has(k) && early.size < 10_000)
            early.set(
              k,
              setTimeout(() => early.delete(k), 30_000),
            );
          return void res.writeHead(202).end();
        }
        default:
          return void res.writeHead(202).end();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}/mcp`,
    get cancelled() {
      return cancelled;
    },
    close: async () => {
      for (const c of [...calls.values()]) c.done();
      for (const t of early.values()) clearTimeout(t);
      early.clear();
      await closeServer(server);
    },
  };
}
