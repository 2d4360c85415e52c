import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { HaltedError } from '../../errors.js';
import { InvalidOptionError } from '../../errors.js';
import type { EffectGuard } from '../../guard/effect-guard.js';
import { LineageWire, lineageToMeta, type Lineage } from '../../lineage/lineage.js';
import type { KillContext } from '../../model/selector.js';
import { AgentRun, type AgentRunOptions } from '../internal/agent-run.js';

/** Options of {@link guardMcpClient}: the run's identity and how tools map to capabilities. */
export type McpRunOptions = AgentRunOptions;

type CallToolParams = Parameters<Client['callTool']>[0];
type CallToolSchema = Parameters<Client['callTool']>[1];
type CallToolOptions = NonNullable<Parameters<Client['callTool']>[2]>;
type CallToolResult = Awaited<ReturnType<Client['callTool']>>;

/** {@link McpRun.callTool}'s options: the SDK's request options and the call's stable id. */
export type GuardedCallToolOptions = CallToolOptions & {
  /**
   * The call's id within the run, stable across a resume (e.g. the model's tool-call id); the
   * idempotency key derives from it. @default `<tool name>#<n>`, the n-th call of that tool in this
   * run (stable when a resumed run repeats its calls in the same order)
   */
  readonly callId?: string;
};

/**
 * The reason sent upstream with `notifications/cancelled`. The MCP SDK sends `String(reason)` to
 * the server verbatim, so the flip's selector, actor and reason (tenant names, incident notes)
 * would reach a third party: a fixed text goes instead.
 */
const UPSTREAM_REASON = 'cancelled by the kill switch';

/**
 * One run's calls through an MCP client (`@modelcontextprotocol/sdk` 1.x) under the kill switch.
 * Each `tools/call` is a guarded effect (capability from the tool's name, key from the run and
 * the call id); a halt arriving while a call is in flight aborts the request, so the SDK sends
 * `notifications/cancelled` upstream (an HTTP disconnect alone does not cancel a call in SDK 1.32),
 * and the caller is freed at once with the {@link HaltedError}; a halted run refuses every later
 * call. KS-14.4
 *
 * @example
 * ```ts
 * import { guardMcpClient } from 'openfeature-kill-switch/mcp';
 * const mcp = guardMcpClient(client, guard, { runId: 'ticket-42', tenant: 'acme' });
 * const result = await mcp.callTool({ name: 'refund', arguments: { order: 42 } });
 * ```
 */
export class McpRun {
  readonly #run: AgentRun;
  readonly #client: Client;
  readonly #guard: EffectGuard;
  readonly #options: McpRunOptions;
  readonly #counts = new Map<string, number>();
  /** The run's lineage as sent in `params._meta` (built once: every call sends the same). */
  readonly #lineageMeta: unknown;
  #proxy: Client | undefined;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad client, guard or option */
  constructor(client: Client, guard: EffectGuard, options: McpRunOptions = {}) {
    if (client === null || typeof client !== 'object' || typeof client.callTool !== 'function')
      throw new InvalidOptionError('client', 'an MCP Client', client);
    this.#run = new AgentRun(guard, options);
    this.#client = client;
    this.#guard = guard;
    // A child inherits the mapping options, never the parent's run id or signal.
    const { runId: _r, signal: _s, tenant: _t, feature: _f, ...inherited } = options;
    this.#options = inherited;
    this.#lineageMeta = lineageToMeta(this.#run.lineage)[LineageWire.META_KEY];
  }

  /** The run's id. */
  get runId(): string {
    return this.#run.runId;
  }

  /** The run's kill attributes. */
  get context(): KillContext {
    return this.#run.context;
  }

  /** The run's lineage (what `_meta` carries). */
  get lineage(): Lineage {
    return this.#run.lineage;
  }

  /**
   * Runs a child of this run through `spawnChildRun` (a sub-agent with its own MCP calls): the
   * spawn is refused while this run or an ancestor is halted, and `fn` gets the same client
   * guarded for the child run (its calls carry the child's lineage). KS-14.1.6
   *
   * @param step - the step of this run that spawns the child (stable across a resume)
   */
  child<T>(step: string, fn: (child: McpRun) => Promise<T> | T): Promise<T> {
    return this.#run.child(step, (_run, c) =>
      fn(new McpRun(this.#client, this.#guard, { ...this.#options, signal: c.signal })),
    );
  }

  /** Aborts (reason: a {@link HaltedError}) when the run is stopped by a halt. */
  get signal(): AbortSignal {
    return this.#run.signal;
  }

  /** The halt that stopped the run, if any. */
  get halted(): HaltedError | undefined {
    return this.#run.halted;
  }

  /**
   * Calls a tool as a guarded effect. KS-14.4.1
   *
   * @param params - the SDK's `tools/call` params (`name`, `arguments`, `_meta`); the run's
   *   lineage is added to `_meta` under `dev.killswitch/lineage` (KS-14.4.3)
   * @param resultSchema - as for `Client.callTool`
   * @param options - the SDK's request options (its `signal` is merged) and the call's `callId`
   * @returns the tool's result (for a call that already landed in this run, the recorded one)
   * @throws {HaltedError} `KS_HALTED` when refused (nothing sent), `KS_ABORTED` when a halt arrived
   *   in flight (`notifications/cancelled` sent upstream)
   */
  callTool(
    params: CallToolParams,
    resultSchema?: CallToolSchema,
    options: GuardedCallToolOptions = {},
  ): Promise<CallToolResult> {
    const name = params?.name;
    if (typeof name !== 'string' || name.length === 0)
      return Promise.reject(new InvalidOptionError('params.name', 'a tool name', name));
    const meta = params._meta;
    if (meta !== undefined && (meta === null || typeof meta !== 'object' || Array.isArray(meta)))
      return Promise.reject(new InvalidOptionError('params._meta', 'an object', meta));
    // KS-14.4.3 the run's lineage travels with the call, so the server (or a gateway) evaluates
    // its effects under the same run tree; the run's own lineage replaces any the caller gave.
    const sent = { ...params, _meta: { ...meta, [LineageWire.META_KEY]: this.#lineageMeta } };
    const { callId: given, signal: callerSignal, ...rest } = options;
    let callId = given;
    if (callId === undefined) {
      const n = (this.#counts.get(name) ?? 0) + 1;
      this.#counts.set(name, n);
      callId = `${name}#${n}`;
    }
    return this.#run.tool(
      name,
      callId,
      (call) => {
        // The request's own signal, fed straight by the call's sources (one controller per call),
        // aborts with a fixed reason: the SDK sends it upstream as text.
        const upstream = new AbortController();
        call.link(upstream, { reason: () => UPSTREAM_REASON });
        return this.#client.callTool(sent, resultSchema, { ...rest, signal: upstream.signal });
      },
      callerSignal,
    );
  }

  /**
   * The client with `callTool` guarded for this run, for code that takes a `Client` (every other
   * method passes through). KS-14.4.1
   */
  get client(): Client {
    this.#proxy ??= new Proxy(this.#client, {
      get: (target, key, receiver) => {
        if (key === 'callTool') return this.callTool.bind(this);
        const v = Reflect.get(target, key, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    return this.#proxy;
  }
}

/**
 * Guards one run's tool calls through an MCP client.
 *
 * @param client - a connected `Client` of `@modelcontextprotocol/sdk`
 * @param guard - the effect guard (its client and ledger)
 * @param options - the run's id, tenant, feature and capability mapping
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad client, guard or option
 */
export function guardMcpClient(
  client: Client,
  guard: EffectGuard,
  options: McpRunOptions = {},
): McpRun {
  return new McpRun(client, guard, options);
}
