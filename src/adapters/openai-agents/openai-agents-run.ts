import {
  Agent,
  Handoff,
  Runner,
  handoff as toHandoff,
  type AgentToolOptionsWithDefault,
  type AgentToolOptionsWithParameters,
  type FunctionTool,
  type Model,
  type ModelProvider,
  type ModelRequest,
  type ModelResponse,
  type RunConfig,
  type RunResult,
  type StreamedRunResult,
  type StreamEvent,
  type Tool,
} from '@openai/agents';
import { InvalidOptionError, type HaltedError } from '../../errors.js';
import type { EffectGuard } from '../../guard/effect-guard.js';
import type { Lineage } from '../../lineage/lineage.js';
import type { KillContext } from '../../model/selector.js';
import { AgentRun, raceSignal, type AgentRunOptions } from '../internal/agent-run.js';
import { haltStream } from '../internal/halt-stream.js';

/** Options of {@link guardRun}: the run's identity and how tools map to capabilities. */
export type OpenAIAgentsRunOptions = AgentRunOptions;

/** What {@link OpenAIAgentsRun.run} takes besides the agent and input: the SDK's own run options. */
export interface GuardedRunOptions {
  /** Runner configuration (model provider, tracing, ...), as for `new Runner(config)`. */
  readonly runConfig?: Partial<RunConfig>;
  /** The caller's signal (merged with the run's). */
  readonly signal?: AbortSignal;
  /** Any other option of the SDK's `run` (`context`, `maxTurns`, `session`, ...). */
  readonly [option: string]: unknown;
}

// Agents of any context and output type: the SDK's generics are invariant in both, and a run
// guards whichever agents the caller built.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyAgent = Agent<any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyHandoff = Handoff<any, any>;
type AnyRunContext = Parameters<AnyHandoff['onInvokeHandoff']>[0];
type Invoke = FunctionTool['invoke'];
/** The options of `Agent.asTool` (either overload: default input, or `parameters`). */
export type AsToolOptions =
  | AgentToolOptionsWithDefault<any, AnyAgent> // eslint-disable-line @typescript-eslint/no-explicit-any
  | AgentToolOptionsWithParameters<any, AnyAgent, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const CONTINUATION = Symbol('continuation');
/** How a handoff's run is built: the root run and the child run it continues under. */
interface Continuation {
  readonly token: typeof CONTINUATION;
  readonly root: OpenAIAgentsRun;
  readonly run: AgentRun;
}

/** Tools made by {@link asTool}: their source agent and options, so a run can guard the agent. */
const agentTools = new WeakMap<
  object,
  { readonly agent: AnyAgent; readonly options: AsToolOptions }
>();

/**
 * `agent.asTool(options)`, remembered so that a guarded run runs the agent as a child run with
 * its own tools and model guarded (an `Agent.asTool` tool runs the source agent with its own
 * runner, out of reach of the run's guard). Use it in place of `agent.asTool`; a guarded run
 * refuses a tool made by `Agent.asTool` directly. KS-14.1.6, KS-14.3.4
 *
 * @example
 * ```ts
 * const triage = new Agent({ name: 'triage', tools: [asTool(researcher, { toolName: 'research' })] });
 * ```
 */
export function asTool(agent: AnyAgent, options: AsToolOptions): FunctionTool {
  if (!(agent instanceof Agent)) throw new InvalidOptionError('agent', 'an Agent', agent);
  const t = agent.asTool(
    options as AgentToolOptionsWithDefault<unknown, AnyAgent>,
  ) as unknown as FunctionTool;
  agentTools.set(t, { agent, options });
  return t;
}

/**
 * One run of an OpenAI Agents SDK (`@openai/agents` 0.20) agent under the kill switch. The agent,
 * its handoff targets and their tools are guarded for this run (clones; the originals are left
 * alone): each function tool's `invoke` is wrapped *outside* the SDK's `errorFunction` (which
 * would turn a halt into "An error occurred while running the tool. Please try again."), each
 * model call is checked and aborted at a halt, and the run's own signal is passed to the runner,
 * so a halt stops the whole run and the caller receives the {@link HaltedError}. KS-14.3
 *
 * @example
 * ```ts
 * import { guardRun } from 'openfeature-kill-switch/openai-agents';
 * const run = guardRun(guard, { runId: 'ticket-42', tenant: 'acme' });
 * const result = await run.run(agent, 'Refund order 42');
 * ```
 */
export class OpenAIAgentsRun {
  readonly #run: AgentRun;
  readonly #guard: EffectGuard;
  readonly #options: OpenAIAgentsRunOptions;
  /** The run that owns the runner: handoffs become its children (not children of children). */
  readonly #root: OpenAIAgentsRun;
  /** The handoff child runs of this (root) run, by step. */
  readonly #handoffs = new Map<string, Promise<OpenAIAgentsRun>>();
  /** Guarded clones of the agents reached so far (handoffs may form cycles). */
  readonly #agents = new Map<AnyAgent, AnyAgent>();
  readonly #tools = new WeakMap<Tool, Tool>();
  readonly #models = new WeakMap<Model, Model>();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option */
  constructor(guard: EffectGuard, options: OpenAIAgentsRunOptions = {}, link?: Continuation) {
    const own = link?.token === CONTINUATION;
    this.#run = own ? link.run : new AgentRun(guard, options);
    this.#guard = guard;
    const { runId: _r, signal: _s, tenant: _t, feature: _f, ...inherited } = options;
    this.#options = inherited;
    this.#root = own ? link.root : this;
  }

  /** The run's lineage (what crosses to another process with its work). */
  get lineage(): Lineage {
    return this.#run.lineage;
  }

  /**
   * Runs a sub-agent as a child of this run (a run of another agent started from a tool): the
   * spawn is a guarded effect of this run (refused while it or an ancestor is halted), the
   * child's id derives from this run's id and `step` (use the tool-call id), and `fn` gets an
   * {@link OpenAIAgentsRun} of the child; a halt on this run or any ancestor stops the child.
   * KS-14.1.6
   *
   * @throws {HaltedError} `KS_HALTED` when the spawn is refused, `KS_ABORTED` when halted in flight
   */
  child<T>(
    step: string,
    fn: (sub: OpenAIAgentsRun) => Promise<T> | T,
    signal?: AbortSignal,
  ): Promise<T> {
    return this.#run.child(step, (_run, c) =>
      fn(
        new OpenAIAgentsRun(this.#guard, {
          ...this.#options,
          signal: signal === undefined ? c.signal : AbortSignal.any([c.signal, signal]),
        }),
      ),
    );
  }

  /**
   * The guarded run of the agent a handoff goes to: a child run of the root run (step
   * `handoff:<agent name>`, so ping-pong handoffs do not deepen the tree), spawned once per run
   * and guarded as a spawn; it continues the same runner, so its halt ends the run. KS-14.3.5
   */
  #handoffRun(agentName: string): Promise<OpenAIAgentsRun> {
    const root = this.#root;
    const step = `handoff:${agentName}`;
    let p = root.#handoffs.get(step);
    if (p === undefined) {
      p = root.#run
        .continuation(step)
        .then(
          (run) =>
            new OpenAIAgentsRun(root.#guard, root.#options, { token: CONTINUATION, root, run }),
        );
      // A refused spawn is not cached: a later handoff asks again (and is refused while halted).
      p.catch(() => root.#handoffs.delete(step));
      root.#handoffs.set(step, p);
    }
    return p;
  }

  /** The run's id. */
  get runId(): string {
    return this.#run.runId;
  }

  /** The run's kill attributes. */
  get context(): KillContext {
    return this.#run.context;
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
   * Runs the agent for this run: a `Runner` with the guarded model provider, the guarded agent,
   * and the run's signal (merged with `options.signal`); settled by the run's signal. KS-14.3.3
   *
   * @param agent - the starting agent
   * @param input - the SDK's input (a string, items, or a `RunState` to resume)
   * @param options - the SDK's run options (`context`, `maxTurns`, ...) and `runConfig`
   * @returns the SDK's run result
   * @throws {HaltedError} when a halt stopped the run (a refused or aborted tool, a refused or
   *   aborted model call, a halt matching the run), whatever the SDK made of it
   */
  async run<A extends AnyAgent>(
    agent: A,
    input: Parameters<Runner['run']>[1],
    options: GuardedRunOptions = {},
  ): Promise<RunResult<unknown, A>> {
    if (!(agent instanceof Agent)) throw new InvalidOptionError('agent', 'an Agent', agent);
    const { runConfig, signal: callerSignal, ...rest } = options;
    if ((rest as { stream?: unknown }).stream === true)
      throw new InvalidOptionError('stream', 'false (use runStreamed for a streamed run)', true);
    const runner = this.#runner(runConfig);
    const guarded = this.agent(agent);
    return this.#run.settle((signal) =>
      runner.run(
        guarded,
        input as never,
        {
          ...rest,
          signal: callerSignal === undefined ? signal : AbortSignal.any([signal, callerSignal]),
        } as never,
      ),
    ) as Promise<RunResult<unknown, A>>;
  }

  /**
   * A streamed run of the agent for this run (as {@link OpenAIAgentsRun.run} with `stream: true`).
   * The SDK ends its text and event streams silently when the run is aborted; here
   * `toTextStream()`, `toStream()` and iterating the result end with the {@link HaltedError}
   * the moment the run stops, and `completed` rejects with it. KS-14.3.3
   *
   * @throws {HaltedError} (from the streams and `completed`) when a halt stopped the run
   */
  async runStreamed<A extends AnyAgent>(
    agent: A,
    input: Parameters<Runner['run']>[1],
    options: GuardedRunOptions = {},
  ): Promise<StreamedRunResult<unknown, A>> {
    if (!(agent instanceof Agent)) throw new InvalidOptionError('agent', 'an Agent', agent);
    const { runConfig, signal: callerSignal, ...rest } = options;
    const runner = this.#runner(runConfig);
    const run = this.#run;
    let result!: StreamedRunResult<unknown, A>;
    let settled!: Promise<void>;
    await run.settle(async (signal) => {
      result = (await runner.run(
        this.agent(agent),
        input as never,
        {
          ...rest,
          stream: true,
          signal: callerSignal === undefined ? signal : AbortSignal.any([signal, callerSignal]),
        } as never,
      )) as unknown as StreamedRunResult<unknown, A>;
      // The run keeps watching its context until the streamed run completes.
      settled = run.settle(() => result.completed);
      settled.catch(() => undefined);
    });
    return new Proxy(result, {
      get(target, key, receiver) {
        if (key === 'completed') return settled;
        if (key === 'toTextStream' || key === 'toStream')
          return (...args: unknown[]) => {
            const s = (target[key] as (...a: unknown[]) => ReadableStream<unknown>)
              .apply(target, args)
              .pipeThrough(haltStream(run.signal, () => undefined));
            return s;
          };
        if (key === Symbol.asyncIterator)
          return async function* () {
            yield* target as AsyncIterable<unknown>;
            const stopped = run.halted;
            if (stopped !== undefined) throw stopped;
          };
        const v = Reflect.get(target, key, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /**
   * A guarded clone of an agent for this run: its function tools wrapped (KS-14.3.1), its model
   * wrapped when it is a model object (a model named by string is resolved and wrapped by the
   * provider {@link OpenAIAgentsRun.modelProvider} returns), and its handoff targets guarded the
   * same way; a handoff continues this run. Clones are cached per run.
   */
  agent<A extends AnyAgent>(agent: A): A {
    const known = this.#agents.get(agent);
    if (known !== undefined) return known as A;
    // Register the clone before visiting handoffs, so a cycle (A -> B -> A) ends.
    const clone = agent.clone({});
    this.#agents.set(agent, clone);
    clone.tools = agent.tools.map((t: Tool) => this.tool(t));
    clone.handoffs = agent.handoffs.map((x: AnyAgent | AnyHandoff) => {
      const h: AnyHandoff = x instanceof Handoff ? x : toHandoff(x);
      return h.clone({
        onInvokeHandoff: async (ctx: AnyRunContext, args: string) => {
          // The spawn is checked before the handoff's own callback runs.
          const run = await this.#handoffRun(h.agentName);
          return run.agent(await h.onInvokeHandoff(ctx, args));
        },
      });
    });
    if (typeof agent.model === 'object' && agent.model !== null)
      clone.model = this.model(agent.model as Model);
    return clone as A;
  }

  /**
   * Guards one tool for this run. A function tool's `invoke` becomes a guarded effect
   * (capability from its name, key from the run and `toolCall.callId`, `details.signal` aborted
   * at a halt); the wrapper sits outside the SDK's `errorFunction`, so a refusal fails the run
   * instead of being fed back to the model. Hosted and other non-function tools pass unchanged
   * (they run at the provider; the model call that requests them is guarded). KS-14.3.1
   */
  tool<T extends Tool>(tool: T): T {
    if (tool.type !== 'function') return tool;
    const known = this.#tools.get(tool);
    if (known !== undefined) return known as T;
    const fn = tool as unknown as FunctionTool;
    const invoke = fn.invoke;
    const run = this.#run;
    const source = agentTools.get(tool);
    if (source === undefined && typeof (tool as { on?: unknown }).on === 'function')
      // An Agent.asTool tool runs its agent with a runner of its own: its tools would be unguarded.
      throw new InvalidOptionError(
        `tools[${fn.name}]`,
        'a function tool, or an agent made a tool with asTool from openfeature-kill-switch/openai-agents (a tool made by Agent.asTool runs its agent unguarded)',
        'a tool made by Agent.asTool',
      );
    const wrapped: Invoke = (runContext, input, details) => {
      const callId = details?.toolCall?.callId;
      if (typeof callId !== 'string' || callId.length === 0)
        // Without a call id there is no stable key: refuse rather than dispatch unrecorded.
        return Promise.reject(
          new InvalidOptionError('toolCall.callId', 'the SDK tool-call id', callId),
        );
      return run.tool(
        fn.name,
        callId,
        source === undefined
          ? (call) =>
              invoke.call(fn, runContext, input, {
                ...details,
                // Merged when the tool reads it (CallSignal).
                get signal() {
                  return call.signal;
                },
              })
          : // KS-14.3.4 the agent runs as a child run: its clone's tools and model are guarded
            // under the child's path, and the child's halt reaches the caller (not the
            // "please try again" the agent tool's errorFunction would make of it).
            (call) =>
              this.child(
                callId,
                (sub) => {
                  const inner = sub
                    .agent(source.agent)
                    .asTool(
                      source.options as AgentToolOptionsWithDefault<unknown, AnyAgent>,
                    ) as unknown as FunctionTool;
                  return sub.settle((s) =>
                    inner.invoke(runContext, input, { ...details, signal: s }),
                  );
                },
                call.signal,
              ),
        details?.signal,
      );
    };
    const clone = Object.create(
      Object.getPrototypeOf(tool) as object,
      Object.getOwnPropertyDescriptors(tool),
    ) as FunctionTool;
    clone.invoke = wrapped;
    this.#tools.set(tool, clone as unknown as Tool);
    return clone as unknown as T;
  }

  /**
   * Wraps a model: each call (plain or streamed) is evaluated first and aborted at a matching
   * halt; a streamed response cut by a halt ends with the {@link HaltedError}. KS-14.3.2
   */
  model(model: Model): Model {
    const known = this.#models.get(model);
    if (known !== undefined) return known;
    const run = this.#run;
    const guarded: Model = {
      ...(model.supportsPromptModelSelection !== undefined
        ? { supportsPromptModelSelection: model.supportsPromptModelSelection }
        : {}),
      async getResponse(request: ModelRequest): Promise<ModelResponse> {
        const r = await run.model(
          (signal) => model.getResponse({ ...request, signal }),
          request.signal,
        );
        r.done();
        return r.value;
      },
      getStreamedResponse(request: ModelRequest): AsyncIterable<StreamEvent> {
        return {
          async *[Symbol.asyncIterator]() {
            let iterator: AsyncIterator<StreamEvent> | undefined;
            const r = await run.model(async (signal) => {
              iterator = model.getStreamedResponse({ ...request, signal })[Symbol.asyncIterator]();
              return signal;
            }, request.signal);
            const signal = r.value;
            try {
              while (true) {
                const next = await raceSignal(iterator!.next(), signal);
                if (next.done) break;
                yield next.value;
              }
              // Streams end silently on abort: a cut stream must not look like a short answer.
              if (signal.aborted) throw signal.reason;
            } finally {
              r.done();
              if (signal.aborted) void iterator?.return?.();
            }
          },
        };
      },
      ...(model.getRetryAdvice !== undefined
        ? { getRetryAdvice: model.getRetryAdvice.bind(model) }
        : {}),
    };
    this.#models.set(model, guarded);
    return guarded;
  }

  /** Wraps a model provider: every model it resolves is wrapped by {@link OpenAIAgentsRun.model}. */
  modelProvider(provider: ModelProvider): ModelProvider {
    return {
      getModel: async (name?: string) => this.model(await provider.getModel(name)),
    };
  }

  /** A runner whose model provider (the given one, else the SDK's default) is guarded. */
  #runner(runConfig: Partial<RunConfig> | undefined): Runner {
    const provider = runConfig?.modelProvider ?? new Runner().config.modelProvider;
    return new Runner({ ...runConfig, modelProvider: this.modelProvider(provider) });
  }

  /**
   * Runs any call of the SDK for this run (a `Runner` of your own, a streamed run) and settles
   * it by the run's signal: pass the signal to the SDK. KS-14.1.2
   *
   * @throws {HaltedError} when a halt stopped the run before the call settled
   */
  settle<T>(call: (signal: AbortSignal) => Promise<T> | T): Promise<T> {
    return this.#run.settle(call);
  }
}

/**
 * Creates an {@link OpenAIAgentsRun}: guard one run of an OpenAI Agents SDK agent.
 *
 * @param guard - the effect guard (its client and ledger)
 * @param options - the run's id, tenant, feature and capability mapping
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option
 */
export function guardRun(
  guard: EffectGuard,
  options: OpenAIAgentsRunOptions = {},
): OpenAIAgentsRun {
  return new OpenAIAgentsRun(guard, options);
}
