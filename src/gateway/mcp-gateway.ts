import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  StdioClientTransport,
  getDefaultEnvironment,
} from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CallToolRequestSchema,
  ErrorCode as McpErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { ErrorCode, HaltedError, KillSwitchError, type ValidationError } from '../errors.js';
import { lineageFromHeaders, lineageFromMeta, type Lineage } from '../lineage/lineage.js';
import type { GatewayConfig, McpUpstreamConfig } from './gateway-config.js';
import { MCP_HALTED_ERROR_CODE, refusalData, refusalOf, refusalText } from './gateway-refusal.js';
import type { Gateway, GatewaySeam } from './gateway.js';
import { Seam } from './gateway-metrics.js';
import { mergeLineage } from './internal/lineage.js';
import { readBody } from './internal/read-body.js';

/**
 * The reason sent upstream with `notifications/cancelled`. The SDK sends the abort reason as text:
 * a fixed one, so the flip's selector and reason (tenant names, incident notes) never reach a
 * third-party server.
 */
const UPSTREAM_CANCEL_REASON = 'cancelled by the kill switch';
const CLIENT_GONE_REASON = 'the client closed the request stream';

type McpConfig = NonNullable<GatewayConfig['mcp']>;

/** One configured upstream MCP server and the client the gateway holds to it. */
class Upstream {
  readonly name: string;
  readonly #config: McpUpstreamConfig;
  #client: Client | undefined;
  #connecting: Promise<Client> | undefined;
  readonly #logger: { warn(m: string): void };

  constructor(name: string, config: McpUpstreamConfig, logger: { warn(m: string): void }) {
    this.name = name;
    this.#config = config;
    this.#logger = logger;
  }

  /** The connected client; connects (again, after the upstream went away) on demand. */
  client(): Promise<Client> {
    if (this.#client !== undefined) return Promise.resolve(this.#client);
    this.#connecting ??= this.#connect().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #connect(): Promise<Client> {
    const c = this.#config;
    const transport: Transport =
      'command' in c
        ? new StdioClientTransport({
            command: c.command,
            args: c.args,
            env: { ...getDefaultEnvironment(), ...(c.env ?? {}) },
            ...(c.cwd !== undefined ? { cwd: c.cwd } : {}),
            stderr: 'inherit',
          })
        : new StreamableHTTPClientTransport(new URL(c.url), {
            ...(c.headers !== undefined ? { requestInit: { headers: c.headers } } : {}),
          });
    const client = new Client({ name: 'killswitch-gateway', version: '1.0.0' });
    client.onclose = () => {
      if (this.#client === client) {
        this.#client = undefined;
        this.#logger.warn(
          `gateway: MCP upstream ${this.name} closed; it is reconnected on the next call`,
        );
      }
    };
    try {
      await client.connect(transport);
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.UNREACHABLE,
        `gateway config mcp.upstreams.${this.name}: cannot connect: ${(err as Error)?.message ?? String(err)}`,
        { cause: err },
      );
    }
    this.#client = client;
    return client;
  }

  async close(): Promise<void> {
    const c = this.#client;
    this.#client = undefined;
    await c?.close();
  }
}

/**
 * The MCP seam of the gateway: an MCP server (Streamable HTTP at `mcp.path`, or stdio) in front of
 * the configured upstream MCP servers. `tools/list` passes through with each upstream's tools
 * under its prefix (`files__read`); every `tools/call` is a guarded effect with capability
 * `<upstream>.<tool>` (configurable) and tenant/feature/run from `_meta["dev.killswitch/lineage"]`
 * or the request's headers. A matching halt cancels the call upstream at once
 * (`notifications/cancelled`) and answers the client at once with a JSON-RPC error
 * {@link MCP_HALTED_ERROR_CODE} naming the flip in `data`; a refused call never leaves. A client
 * that closes its request stream (how the 2026-07-28 protocol cancels) or sends
 * `notifications/cancelled` (how 2025 versions do) cancels the call upstream too. KS-15.3
 */
export class McpGateway implements GatewaySeam {
  readonly #gw: Gateway;
  readonly #config: McpConfig;
  readonly #upstreams: Upstream[];
  readonly #sessions = new Map<string, StreamableHTTPServerTransport>();
  /** Calls in flight, by session and JSON-RPC id: aborted when the client closes its stream. */
  readonly #live = new Map<string, AbortController>();
  readonly #servers = new Set<Server>();

  private constructor(gw: Gateway, config: McpConfig, upstreams: Upstream[]) {
    this.#gw = gw;
    this.#config = config;
    this.#upstreams = upstreams;
  }

  /**
   * Connects every configured upstream (so a wrong command or URL fails the start, named).
   *
   * @throws {KillSwitchError} `KS_UNREACHABLE` naming `mcp.upstreams.<name>`
   */
  static async open(
    gw: Gateway,
    config: McpConfig,
    logger: { warn(m: string): void },
  ): Promise<McpGateway> {
    const upstreams = Object.entries(config.upstreams).map(
      ([name, c]) => new Upstream(name, c, logger),
    );
    try {
      await Promise.all(upstreams.map((u) => u.client()));
    } catch (err) {
      await Promise.allSettled(upstreams.map((u) => u.close()));
      throw err;
    }
    return new McpGateway(gw, config, upstreams);
  }

  /** A fresh MCP server session wired to the upstreams. */
  #server(): Server {
    const server = new Server(
      { name: 'killswitch-gateway', version: '1.0.0' },
      { capabilities: { tools: { listChanged: false } } },
    );
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: await this.#listTools(),
    }));
    server.setRequestHandler(CallToolRequestSchema, (request, extra) =>
      this.#callTool(request.params, extra),
    );
    this.#servers.add(server);
    server.onclose = () => this.#servers.delete(server);
    return server;
  }

  async #listTools(): Promise<Tool[]> {
    const all: Tool[] = [];
    for (const u of this.#upstreams) {
      const client = await u.client();
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor !== undefined ? { cursor } : {});
        for (const t of page.tools)
          all.push({ ...t, name: `${u.name}${this.#config.separator}${t.name}` });
        cursor = page.nextCursor;
      } while (cursor !== undefined);
    }
    return all;
  }

  #resolve(name: string): { upstream: Upstream; tool: string } | undefined {
    let best: { upstream: Upstream; tool: string } | undefined;
    for (const u of this.#upstreams) {
      const prefix = `${u.name}${this.#config.separator}`;
      if (name.startsWith(prefix) && name.length > prefix.length) {
        if (best === undefined || u.name.length > best.upstream.name.length)
          best = { upstream: u, tool: name.slice(prefix.length) };
      }
    }
    return best;
  }

  async #callTool(
    params: {
      name: string;
      arguments?: Record<string, unknown> | undefined;
      _meta?: Record<string, unknown> | undefined;
    },
    extra: {
      signal: AbortSignal;
      sessionId?: string | undefined;
      requestId: string | number;
      requestInfo?: { headers: Record<string, string | string[] | undefined> } | undefined;
      _meta?: Record<string, unknown> | undefined;
      sendNotification: (n: never) => Promise<void>;
    },
  ): Promise<CallToolResult> {
    const target = this.#resolve(params.name);
    if (target === undefined)
      throw new McpError(
        McpErrorCode.InvalidParams,
        `unknown tool ${params.name}: list the gateway's tools for the prefixed names`,
      );
    let lineage: Lineage;
    try {
      lineage = this.#lineage(params._meta, extra.requestInfo?.headers);
    } catch (err) {
      // KS-15.3.3 an unreadable lineage refuses the call: a run halt could not match it.
      this.#gw.metrics.calls.inc({
        seam: Seam.MCP,
        target: target.upstream.name,
        outcome: 'rejected',
      });
      throw new McpError(McpErrorCode.InvalidParams, (err as ValidationError).message, {
        issues: (err as ValidationError).issues,
      });
    }
    const capability = this.#config.capability
      .replaceAll('{upstream}', target.upstream.name)
      .replaceAll('{tool}', target.tool);
    const key = `${extra.sessionId ?? 'stdio'}\u0000${String(extra.requestId)}`;
    const gone = new AbortController();
    this.#live.set(key, gone);
    try {
      return await this.#gw.run(
        { seam: Seam.MCP, target: target.upstream.name, capability, lineage },
        async (signal) => {
          // One signal for the three ways a call ends early; its reason is what goes upstream.
          const upstreamAbort = new AbortController();
          const cancel = (): void => upstreamAbort.abort(UPSTREAM_CANCEL_REASON);
          const sources = [signal, extra.signal, gone.signal];
          for (const s of sources) {
            if (s.aborted) cancel();
            else s.addEventListener('abort', cancel, { once: true });
          }
          try {
            const client = await target.upstream.client();
            const started = performance.now();
            const progressToken = extra._meta?.progressToken;
            const result = await client.callTool(
              {
                name: target.tool,
                ...(params.arguments !== undefined ? { arguments: params.arguments } : {}),
                ...(params._meta !== undefined
                  ? { _meta: withoutProgressToken(params._meta) }
                  : {}),
              },
              undefined,
              {
                signal: upstreamAbort.signal,
                timeout: this.#config.callTimeoutMs,
                resetTimeoutOnProgress: true,
                ...(progressToken !== undefined
                  ? {
                      onprogress: (p) => {
                        void extra
                          .sendNotification({
                            method: 'notifications/progress',
                            params: { ...p, progressToken },
                          } as never)
                          .catch(() => undefined);
                      },
                    }
                  : {}),
              },
            );
            this.#gw.observeUpstream(
              Seam.MCP,
              target.upstream.name,
              (performance.now() - started) / 1000,
            );
            return result as CallToolResult;
          } finally {
            for (const s of sources) s.removeEventListener('abort', cancel);
          }
        },
      );
    } catch (err) {
      if (err instanceof HaltedError) {
        const r = refusalOf(err);
        throw new McpError(MCP_HALTED_ERROR_CODE, refusalText(r), refusalData(r));
      }
      throw err;
    } finally {
      this.#live.delete(key);
    }
  }

  #lineage(
    meta: unknown,
    headers: Record<string, string | string[] | undefined> | undefined,
  ): Lineage {
    const d = this.#gw.config.defaults;
    let l: Lineage = {
      ...(d.tenant !== undefined ? { tenant: d.tenant } : {}),
      ...(d.feature !== undefined ? { feature: d.feature } : {}),
      runPath: [],
    };
    if (headers !== undefined) l = mergeLineage(l, lineageFromHeaders(headers));
    return mergeLineage(l, lineageFromMeta(meta));
  }

  /** Streamable HTTP at `mcp.path`: one MCP session per `mcp-session-id`. KS-15.3.1 */
  readonly route = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== this.#config.path) return false;
    let parsed: unknown;
    if (req.method === 'POST') {
      try {
        parsed = JSON.parse((await readBody(req, 4 * 1024 * 1024)).toString('utf8'));
      } catch (err) {
        jsonRpcError(res, 400, McpErrorCode.ParseError, `request body: ${(err as Error).message}`);
        return true;
      }
    }
    const sid = req.headers['mcp-session-id'];
    let transport = typeof sid === 'string' ? this.#sessions.get(sid) : undefined;
    if (transport === undefined) {
      if (typeof sid === 'string') {
        jsonRpcError(res, 404, McpErrorCode.ConnectionClosed, `unknown MCP session ${sid}`);
        return true;
      }
      const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          this.#sessions.set(id, t);
        },
      });
      t.onclose = () => {
        if (t.sessionId !== undefined) this.#sessions.delete(t.sessionId);
      };
      await this.#server().connect(t);
      transport = t;
    }
    // KS-15.3.6 a client that closes its request stream cancels its calls (the 2026-07-28 way).
    const ids = requestIds(parsed);
    if (ids.length > 0) {
      res.on('close', () => {
        if (res.writableFinished) return;
        const session = transport.sessionId ?? (typeof sid === 'string' ? sid : undefined);
        for (const id of ids)
          this.#live.get(`${session ?? 'stdio'}\u0000${String(id)}`)?.abort(CLIENT_GONE_REASON);
      });
    }
    await transport.handleRequest(req, res, parsed);
    return true;
  };

  /**
   * Serves one MCP session over this process's stdin and stdout (for local agents that start the
   * gateway as their MCP server). Resolves when the session ends. KS-15.3.1
   */
  async serveStdio(): Promise<void> {
    const transport = new StdioServerTransport();
    const closed = new Promise<void>((resolve) => {
      transport.onclose = () => resolve();
    });
    await this.#server().connect(transport);
    await closed;
  }

  async close(): Promise<void> {
    for (const c of this.#live.values()) c.abort(UPSTREAM_CANCEL_REASON);
    for (const t of [...this.#sessions.values()]) await t.close().catch(() => undefined);
    for (const s of [...this.#servers]) await s.close().catch(() => undefined);
    await Promise.allSettled(this.#upstreams.map((u) => u.close()));
  }
}

/** The ids of the JSON-RPC requests (not notifications) in a POST body. */
function requestIds(body: unknown): (string | number)[] {
  const msgs = Array.isArray(body) ? body : [body];
  const out: (string | number)[] = [];
  for (const m of msgs) {
    if (m !== null && typeof m === 'object' && 'method' in m && 'id' in m) {
      const id = (m as { id: unknown }).id;
      if (typeof id === 'string' || typeof id === 'number') out.push(id);
    }
  }
  return out;
}

/** The upstream gets its own progress token from the SDK; ours stays between gateway and client. */
function withoutProgressToken(meta: Record<string, unknown>): Record<string, unknown> {
  const { progressToken: _dropped, ...rest } = meta;
  return rest;
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  const text = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
