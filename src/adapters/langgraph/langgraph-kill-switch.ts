import { ToolMessage } from '@langchain/core/messages';
import { createMiddleware, type AgentMiddleware } from 'langchain';
import { HaltedError, InvalidOptionError, ValidationError } from '../../errors.js';
import type { EffectGuard, ResultCodec } from '../../guard/effect-guard.js';
import { currentRunScope } from '../../scope/run-scope.js';
import { AgentRun, raceSignal } from '../internal/agent-run.js';
import type { CallSignal } from '../internal/merge-signals.js';

/** Options of {@link killSwitch}: how a LangGraph run maps onto the kill switch's attributes. */
export interface LangGraphKillSwitchOptions {
  /** The tenant of every run (or derive it per run with `context`). @default none */
  readonly tenant?: string;
  /** The feature of every run (or derive it per run with `context`). @default none */
  readonly feature?: string;
  /**
   * Tenant and feature of one run, read from the graph's runtime context (what the caller passed
   * as `context`), e.g. `(ctx) => ({ tenant: ctx.tenant })`. Wins over `tenant` and `feature`.
   * @default none
   */
  readonly context?: (runtimeContext: unknown) => {
    readonly tenant?: string | undefined;
    readonly feature?: string | undefined;
  };
  /** The capability of a tool call, from the tool's name. @default the tool's name */
  readonly capability?: (toolName: string) => string;
  /** The capability of a model call. @default 'llm' */
  readonly modelCapability?: string;
}

/** The graph methods {@link LangGraphKillSwitch.invoke} and `stream` call. */
interface Invocable<I, O> {
  invoke(input: I, config?: Record<string, unknown>): Promise<O>;
  stream(input: I, config?: Record<string, unknown>): Promise<AsyncIterable<unknown>>;
}

/** The runtime a middleware hook receives, as far as the kill switch reads it. */
interface HookRuntime {
  readonly configurable?: {
    readonly thread_id?: unknown;
    readonly checkpoint_ns?: unknown;
    readonly [key: string]: unknown;
  };
  readonly context?: unknown;
  readonly signal?: AbortSignal;
}

/** The `configurable` key under which `invoke` and `stream` hand the run to the middleware. */
const RUN_KEY = '__killswitch_run';
/** The `configurable` key naming the checkpoint namespace the handed-over run stands for. */
const RUN_NS_KEY = '__killswitch_run_ns';

/** Hook runs kept at most (threads in flight at once); past it the cache starts over. */
const MAX_HOOK_RUNS = 1024;

/** The subgraph child runs of a run, by step (one spawn per subgraph task and run). */
const subgraphRuns = new WeakMap<AgentRun, Map<string, Promise<AgentRun>>>();

/**
 * The tasks between a run and a hook: the segments of the hook's checkpoint namespace below the
 * run's own (`sub:<task>|leaf:<task>` under the root: `sub:<task>` is a subgraph task), without
 * the hook's own node. LangGraph derives task ids from the checkpoint, so a resumed thread names
 * the same tasks.
 */
function subgraphSteps(ns: unknown, runNs: unknown): string[] {
  if (typeof ns !== 'string' || ns.length === 0) return [];
  const base = typeof runNs === 'string' ? runNs : '';
  let rest = ns;
  if (base.length > 0) {
    if (ns !== base && !ns.startsWith(`${base}|`)) return [];
    rest = ns.slice(base.length + 1);
  }
  const segments = rest.length === 0 ? [] : rest.split('|');
  return segments.slice(0, -1);
}

/**
 * Records a tool's `ToolMessage` (content, status, ...) with `landed` and rebuilds it on a
 * replay, so a resumed thread that re-runs a landed tool call gets the same message back. Other
 * results (a `Command`) are not recorded: a replay of them is refused as a duplicate.
 */
const TOOL_MESSAGE: ResultCodec<unknown> = {
  encode(value) {
    if (!ToolMessage.isInstance(value)) return undefined;
    const { content, tool_call_id, name, status, artifact } = value;
    // The common message (text content, no artifact) is JSON already: built as the round trip
    // below would build it (undefined fields left out), without serialising it.
    if (
      typeof content === 'string' &&
      typeof tool_call_id === 'string' &&
      artifact === undefined &&
      (name === undefined || typeof name === 'string') &&
      (status === undefined || typeof status === 'string')
    ) {
      const plain: Record<string, string> = { content, tool_call_id };
      if (name !== undefined) plain['name'] = name;
      if (status !== undefined) plain['status'] = status;
      return plain;
    }
    return JSON.parse(JSON.stringify({ content, tool_call_id, name, status, artifact })) as unknown;
  },
  decode: (stored) => new ToolMessage(stored as ConstructorParameters<typeof ToolMessage>[0]),
};

/**
 * The kill switch for LangGraph.js (`@langchain/langgraph` 1.x) and `langchain` 1.x agents. The
 * run id is the thread id (`configurable.thread_id`), so a resumed thread is the same run and its
 * ledger keys repeat. {@link LangGraphKillSwitch.middleware} guards a `createAgent` agent: each
 * tool call is a guarded effect (its tool gets the guard's signal) and each model call is checked,
 * and a halt throws out of the middleware, which ends the graph run (the framework's fatal seam:
 * an error from `wrapToolCall` is not fed back to the model). {@link LangGraphKillSwitch.invoke}
 * and {@link LangGraphKillSwitch.stream} also pass the run's own signal to the graph, so a halt
 * aborts in-flight model calls too, and settle the call by that signal. KS-14.5
 *
 * @example
 * ```ts
 * import { killSwitch } from 'openfeature-kill-switch/langgraph';
 * const ks = killSwitch(guard, { tenant: 'acme' });
 * const agent = createAgent({ model, tools, middleware: [ks.middleware], checkpointer });
 * const result = await ks.invoke(agent, { messages }, { configurable: { thread_id: 'ticket-42' } });
 * ```
 */
export class LangGraphKillSwitch {
  /** Add to `createAgent({ middleware: [...] })`; put it first, so it wraps every other one. */
  readonly middleware: AgentMiddleware;
  readonly #guard: EffectGuard;
  readonly #options: LangGraphKillSwitchOptions;
  /** Runs of hooks without a handed-over run, by thread, tenant and feature (see `#hookRun`). */
  readonly #hookRuns = new Map<string, AgentRun>();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option */
  constructor(guard: EffectGuard, options: LangGraphKillSwitchOptions = {}) {
    if (guard === null || typeof guard !== 'object' || typeof guard.run !== 'function')
      throw new InvalidOptionError('guard', 'an EffectGuard', guard);
    if (options.context !== undefined && typeof options.context !== 'function')
      throw new InvalidOptionError('context', 'a function of the runtime context', options.context);
    this.#guard = guard;
    this.#options = options;
    // Checked now (a bad tenant fails at construction, not at the first tool call).
    this.#runFor(undefined, 'options-check');
    this.middleware = createMiddleware({
      name: 'KillSwitch',
      // KS-14.5.1 the tool gets the guard's signal through a tool that merges it into its config
      // (the handler does not forward a changed runtime.signal to the tool).
      // Not an async function: most calls sit in no subgraph and get their run at once, and each
      // extra await costs promises the async hooks visit (LangChain keeps AsyncLocalStorage on).
      wrapToolCall: (request, handler) => {
        const callId = request.toolCall.id;
        if (typeof callId !== 'string' || callId.length === 0)
          return Promise.reject(
            new ValidationError('tool call', [
              {
                path: ['toolCall', 'id'],
                message: 'must be the model tool-call id (the key needs it)',
              },
            ]),
          );
        const runtime = request.runtime as HookRuntime;
        const call = (run: AgentRun) =>
          run.tool(
            request.toolCall.name,
            callId,
            (c) => handler({ ...request, tool: withSignal(request.tool, c) }),
            runtime.signal,
            TOOL_MESSAGE as ResultCodec<Awaited<ReturnType<typeof handler>>>,
          );
        let found: AgentRun | Promise<AgentRun>;
        try {
          found = this.#runOf(runtime);
        } catch (err) {
          return Promise.reject(err as Error);
        }
        return found instanceof Promise ? found.then(call) : call(found);
      },
      // KS-14.5.2 checked before each model call; a halt while it runs frees the caller at once
      // (and aborts the call itself when the graph got the run's signal from invoke or stream).
      wrapModelCall: async (request, handler) => {
        const found = this.#runOf(request.runtime as HookRuntime);
        const run = found instanceof Promise ? await found : found;
        const r = await run.model(
          async () => handler(request),
          (request.runtime as HookRuntime).signal,
        );
        r.done();
        return r.value;
      },
    }) as unknown as AgentMiddleware;
  }

  /**
   * Invokes a graph (a `createAgent` agent or any compiled graph) as one run: the run id is
   * `config.configurable.thread_id`, the run's signal is passed to the graph (merged with
   * `config.signal`), and the call is settled by that signal. KS-14.5.3
   *
   * @throws {HaltedError} when a halt stopped the run, whatever the graph made of it (LangGraph
   *   rejects an aborted run with a bare `Error("Abort")`)
   * @throws {ValidationError} `KS_INVALID_INPUT` when the config names no thread id
   */
  async invoke<I, O>(
    graph: Invocable<I, O>,
    input: I,
    config: Record<string, unknown>,
  ): Promise<O> {
    const { run, config: c } = this.#enter(config);
    return run.settle((signal) => graph.invoke(input, withRunSignal(c, signal)));
  }

  /**
   * Streams a graph as one run (as {@link LangGraphKillSwitch.invoke}); the stream ends with the
   * {@link HaltedError} the moment the run stops, never silently. KS-14.5.3
   */
  async *stream<I>(
    graph: Invocable<I, unknown>,
    input: I,
    config: Record<string, unknown>,
  ): AsyncGenerator<unknown, void, undefined> {
    const { run, config: c } = this.#enter(config);
    let iterator: AsyncIterator<unknown> | undefined;
    let finish!: () => void;
    const open = new Promise<void>((resolve) => (finish = resolve));
    // The run watches its context while the stream is open.
    const settled = run.settle(async (signal) => {
      iterator = (await graph.stream(input, withRunSignal(c, signal)))[Symbol.asyncIterator]();
      await open;
    });
    settled.catch(() => undefined);
    try {
      while (iterator === undefined) {
        const stopped = run.halted;
        if (stopped !== undefined) throw stopped;
        await new Promise((r) => setImmediate(r));
      }
      while (true) {
        let next: IteratorResult<unknown>;
        try {
          next = await raceSignal(iterator.next(), run.signal);
        } catch (err) {
          throw run.halted ?? err;
        }
        if (next.done) break;
        yield next.value;
      }
      const stopped = run.halted;
      if (stopped !== undefined) throw stopped;
    } finally {
      finish();
      if (run.halted !== undefined) void iterator?.return?.();
    }
  }

  #enter(config: Record<string, unknown>): { run: AgentRun; config: Record<string, unknown> } {
    if (config === null || typeof config !== 'object')
      throw new InvalidOptionError(
        'config',
        'a LangGraph config with configurable.thread_id',
        config,
      );
    const configurable = (config['configurable'] ?? {}) as Record<string, unknown>;
    const run = this.#runFor(config['context'], configurable['thread_id']);
    return {
      run,
      config: { ...config, configurable: { ...configurable, [RUN_KEY]: run } },
    };
  }

  /**
   * The run a hook or node belongs to: the one `invoke`/`stream` (or {@link node}) handed over,
   * else one for this call; inside a subgraph, the child run of each subgraph task between the
   * two (KS-14.5.4).
   */
  #runOf(runtime: HookRuntime): AgentRun | Promise<AgentRun> {
    const c = runtime.configurable;
    const given = c?.[RUN_KEY];
    const run = given instanceof AgentRun ? given : this.#hookRun(runtime.context, c?.thread_id);
    const steps = subgraphSteps(c?.checkpoint_ns, given === run ? c?.[RUN_NS_KEY] : '');
    // Most hooks sit in no subgraph: their run is answered without a promise.
    return steps.length === 0 ? run : this.#subgraphRun(run, steps);
  }

  /** The child run of each subgraph task in `steps`, below `run` (KS-14.5.4). */
  async #subgraphRun(run: AgentRun, steps: readonly string[]): Promise<AgentRun> {
    for (const step of steps) {
      let runs = subgraphRuns.get(run);
      if (runs === undefined) subgraphRuns.set(run, (runs = new Map()));
      let next = runs.get(step);
      if (next === undefined) {
        next = run.continuation(step);
        // A refused spawn is not kept: the next hook asks again (and is refused while halted).
        const mine = runs;
        next.catch(() => mine.delete(step));
        runs.set(step, next);
      }
      run = await next;
    }
    return run;
  }

  /**
   * Wraps a graph node so each of its tasks runs as a child run of the thread's run (or of the
   * subgraph task's run it sits in): a `Send` fan-out makes one child per task, a node that
   * invokes another graph makes that graph's run a child. The step is the task's checkpoint
   * namespace (`worker:<task id>`, the same when a resumed thread re-runs the task); the spawn is
   * guarded (refused while the thread or an ancestor is halted); inside, `guard.run` and
   * everything else that reads the run scope act for the child, the node's `config.signal` also
   * aborts at a halt of the child or any ancestor, and a `createAgent` agent invoked from the node
   * with its config acts for the child. A halt of the child ends the whole graph run (LangGraph
   * cannot finish a step whose task failed). KS-14.5.4
   *
   * @example
   * ```ts
   * graph.addNode('worker', ks.node(async (state, config) =>
   *   guard.run({ step: 'fetch', capability: 'web.fetch' }, (signal) => fetch(state.url, { signal }))))
   * ```
   */
  // The node's config is LangGraph's (a RunnableConfig with the runtime's fields): any, so the
  // wrapped node fits `addNode` whatever the graph's state and context types.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  node<S, R, C = any>(
    fn: (state: S, config: C) => R | Promise<R>,
  ): (state: S, config: C) => Promise<R> {
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', 'a node function', fn);
    return async (state, cfg) => {
      const config = (cfg ?? {}) as Record<string, unknown>;
      const configurable = (config?.['configurable'] ?? {}) as Record<string, unknown>;
      const ns = configurable['checkpoint_ns'];
      const taskId = configurable['__pregel_task_id'];
      const step =
        typeof ns === 'string' && ns.length > 0
          ? ns.slice(ns.lastIndexOf('|') + 1)
          : typeof taskId === 'string'
            ? taskId
            : undefined;
      if (step === undefined)
        throw new ValidationError('LangGraph node config', [
          {
            path: ['configurable', 'checkpoint_ns'],
            message: 'must name the task (ks.node runs only as a node of a compiled graph)',
          },
        ]);
      const own = config['signal'];
      const parent = await this.#runOf({
        configurable,
        context: config['context'],
        ...(own instanceof AbortSignal ? { signal: own } : {}),
      });
      try {
        return await parent.child(step, (child, c) => {
          const merged = own instanceof AbortSignal ? AbortSignal.any([own, c.signal]) : c.signal;
          return fn(state, {
            ...config,
            signal: merged,
            configurable: { ...configurable, [RUN_KEY]: child, [RUN_NS_KEY]: ns },
          } as C);
        });
      } catch (err) {
        // A halted child fails its task; the graph cannot go on, so the thread's run stops too.
        if (err instanceof HaltedError) parent.stop(err);
        throw parent.halted ?? err;
      }
    };
  }

  /**
   * The run of a hook that no `invoke`, `stream` or `node` handed one to: one per thread (with
   * its tenant and feature), kept while it is not stopped, so a thread's tool calls share the
   * run's stop (a halt of one call aborts the others' signals, DESIGN section 6) and a hook does
   * not build a run each time. A stopped run is replaced by a fresh one, which the guard
   * evaluates like any other: a thread resumed after the halt is lifted runs again.
   */
  #hookRun(runtimeContext: unknown, threadId: unknown): AgentRun {
    // Inside a run scope the lineage depends on the scope: built each time, as before.
    if (typeof threadId !== 'string' || currentRunScope() !== undefined)
      return this.#runFor(runtimeContext, threadId);
    const o = this.#options;
    const derived =
      o.context !== undefined && runtimeContext !== undefined ? o.context(runtimeContext) : {};
    // Without a `context` option every run of this middleware has the same tenant and feature:
    // the thread id alone is the key (no JSON per hook call). Keys of one instance are all of
    // one kind, as the option is fixed at construction.
    const key =
      o.context === undefined
        ? threadId
        : JSON.stringify([threadId, derived.tenant ?? null, derived.feature ?? null]);
    let run = this.#hookRuns.get(key);
    if (run === undefined || run.halted !== undefined) {
      run = this.#runFor(runtimeContext, threadId, derived);
      if (this.#hookRuns.size >= MAX_HOOK_RUNS) this.#hookRuns.clear();
      this.#hookRuns.set(key, run);
    }
    return run;
  }

  #runFor(
    runtimeContext: unknown,
    threadId: unknown,
    derivedContext?: {
      readonly tenant?: string | undefined;
      readonly feature?: string | undefined;
    },
  ): AgentRun {
    if (typeof threadId !== 'string' || threadId.length === 0)
      throw new ValidationError('LangGraph config', [
        {
          path: ['configurable', 'thread_id'],
          message:
            'must name the thread: it is the run id the kill switch evaluates and keys effects by',
        },
      ]);
    const o = this.#options;
    const derived =
      derivedContext ??
      (o.context !== undefined && runtimeContext !== undefined ? o.context(runtimeContext) : {});
    const tenant = derived.tenant ?? o.tenant;
    const feature = derived.feature ?? o.feature;
    return new AgentRun(this.#guard, {
      runId: threadId,
      ...(tenant !== undefined ? { tenant } : {}),
      ...(feature !== undefined ? { feature } : {}),
      ...(o.capability !== undefined ? { capability: o.capability } : {}),
      ...(o.modelCapability !== undefined ? { modelCapability: o.modelCapability } : {}),
    });
  }
}

/**
 * Creates a {@link LangGraphKillSwitch}.
 *
 * @param guard - the effect guard (its client and ledger)
 * @param options - tenant and feature (fixed or from the runtime context), capability mapping
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option
 */
export function killSwitch(
  guard: EffectGuard,
  options: LangGraphKillSwitchOptions = {},
): LangGraphKillSwitch {
  return new LangGraphKillSwitch(guard, options);
}

/** The config with the run's signal merged into the caller's. */
function withRunSignal(
  config: Record<string, unknown>,
  signal: AbortSignal,
): Record<string, unknown> {
  const own = config['signal'];
  return {
    ...config,
    signal: own instanceof AbortSignal ? AbortSignal.any([signal, own]) : signal,
  };
}

/**
 * A view of the tool whose calls get the call's signals merged into their config's signal: one
 * controller fed by the config's signal and the call's sources (not a merged one of each).
 */
function withSignal<T>(tool: T, call: CallSignal): T {
  if (tool === null || typeof tool !== 'object') return tool;
  const invoke = (tool as { invoke?: unknown }).invoke;
  if (typeof invoke !== 'function') return tool;
  const view = Object.create(tool as object) as { invoke: unknown };
  view.invoke = (input: unknown, config?: { signal?: AbortSignal }) => {
    const own = config?.signal;
    let signal: AbortSignal;
    if (own === undefined) signal = call.signal;
    else {
      // The listeners go when the call settles.
      const both = new AbortController();
      call.link(both, { also: own });
      signal = both.signal;
    }
    return (invoke as (i: unknown, c: unknown) => unknown).call(tool, input, { ...config, signal });
  };
  return view as T;
}
