import { Agent, type AgentConfig } from '@mastra/core/agent';
import { InvalidOptionError, type HaltedError } from '../../errors.js';
import type { EffectGuard } from '../../guard/effect-guard.js';
import type { Lineage } from '../../lineage/lineage.js';
import type { KillContext } from '../../model/selector.js';
import { AgentRun, type AgentRunOptions } from '../internal/agent-run.js';
import { haltStream } from '../internal/halt-stream.js';

/** Options of {@link guardRun}: the run's identity and how tools map to capabilities. */
export type MastraRunOptions = AgentRunOptions;

/** A language model object as Mastra takes it (provider spec v2, v3 or v4). */
export interface MastraModel {
  readonly specificationVersion: string;
  readonly provider: string;
  readonly modelId: string;
  /** URL patterns the model reads itself (provider spec v2+). */
  readonly supportedUrls?: unknown;
  doGenerate(options: { abortSignal?: AbortSignal }): PromiseLike<unknown>;
  doStream(options: { abortSignal?: AbortSignal }): PromiseLike<{ stream: ReadableStream }>;
}

/** What Mastra hands a tool's `execute`: the tool-call id sits under `agent` (or at the top for AI SDK tools). */
interface ToolContext {
  readonly toolCallId?: string;
  readonly agent?: { readonly toolCallId?: string };
  readonly abortSignal?: AbortSignal;
}

type Execute = (input: unknown, context?: ToolContext) => unknown;

/**
 * A Mastra agent's config as {@link MastraRun.agent} takes it: `AgentConfig` with a model object
 * (a router id or a function could not be guarded) and an object of tools.
 */
export type MastraAgentConfig = Omit<AgentConfig, 'model' | 'tools'> & {
  readonly model: MastraModel;
  readonly tools?: Record<string, unknown>;
};
type Messages = Parameters<Agent['generate']>[0];
/** The options of `agent.generate` / `agent.stream` (`maxSteps`, `memory`, ...), passed as given. */
export interface MastraCallOptions {
  /** The caller's own signal, merged with the run's. */
  readonly abortSignal?: AbortSignal;
  readonly [option: string]: unknown;
}
type Call = (messages: Messages, options: object) => Promise<unknown>;

/**
 * One run of a Mastra (`@mastra/core` 1.x) agent under the kill switch. Its tools are guarded
 * effects, its model calls are checked and aborted at a halt, and a halt stops the whole run: the
 * run's own signal is the agent's `abortSignal`, so the agent loop stops at once (Mastra then
 * resolves quietly, `finishReason: 'tool-calls'`, and feeds a tool's thrown error back to the
 * model), and the caller receives the {@link HaltedError} naming the flip. KS-14.7, KS-14.1.2
 *
 * @example
 * ```ts
 * import { guardRun } from 'openfeature-kill-switch/mastra';
 * const run = guardRun(guard, { runId: 'ticket-42', tenant: 'acme' });
 * const agent = run.agent({ id: 'support', name: 'support', instructions, model, tools });
 * const { text } = await run.generate(agent, 'Handle ticket 42', { maxSteps: 10 });
 * ```
 */
export class MastraRun {
  readonly #run: AgentRun;
  readonly #guard: EffectGuard;
  readonly #options: MastraRunOptions;
  readonly #tools = new WeakMap<object, object>();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option */
  constructor(guard: EffectGuard, options: MastraRunOptions = {}) {
    this.#run = new AgentRun(guard, options);
    this.#guard = guard;
    // A child inherits the mapping options, never the parent's run id, tenant or signal.
    const { runId: _r, signal: _s, tenant: _t, feature: _f, ...inherited } = options;
    this.#options = inherited;
  }

  /** The run's id. */
  get runId(): string {
    return this.#run.runId;
  }

  /** The run's kill attributes. */
  get context(): KillContext {
    return this.#run.context;
  }

  /** The run's lineage (what crosses to another process with its work). */
  get lineage(): Lineage {
    return this.#run.lineage;
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
   * Runs a sub-agent as a child of this run (an agent called from a tool, a fanned-out task): the
   * spawn is a guarded effect of this run (refused while it or an ancestor is halted), the child's
   * id derives from this run's id and `step` (use the tool-call id), and `fn` gets a
   * {@link MastraRun} of the child: a halt on this run or any ancestor stops the child, and the
   * child's halt reaches this run as the tool's {@link HaltedError}, which stops it too. KS-14.1.6
   *
   * @example
   * ```ts
   * execute: (input, ctx) => run.child(ctx.agent.toolCallId, (sub) =>
   *   sub.generate(sub.agent({ id: 'research', name: 'research', instructions, model, tools }), input.topic))
   * ```
   * @throws {HaltedError} `KS_HALTED` when the spawn is refused, `KS_ABORTED` when halted in flight
   */
  child<T>(step: string, fn: (sub: MastraRun) => Promise<T> | T): Promise<T> {
    return this.#run.child(step, (_run, c) =>
      fn(new MastraRun(this.#guard, { ...this.#options, signal: c.signal })),
    );
  }

  /**
   * Guards every tool that has an `execute` (Mastra `createTool` tools and AI SDK tools alike):
   * each call is a guarded effect (capability from the key the tool is listed under, key from the
   * run and the tool-call id), its `abortSignal` fires at a matching halt, and a refusal or abort
   * stops the run (Mastra would feed the thrown error back to the model). A tool called without a
   * tool-call id (outside an agent) is refused: without one there is no stable key. KS-14.7.1
   *
   * @param tools - the tools, as passed to `new Agent({ tools })`
   * @returns tools of the same shape (each a copy; the caller's are not changed)
   */
  tools<TOOLS extends Record<string, unknown>>(tools: TOOLS): TOOLS {
    if (tools === null || typeof tools !== 'object')
      throw new InvalidOptionError('tools', 'an object of tools', tools);
    const out: Record<string, unknown> = {};
    for (const [name, t] of Object.entries(tools)) out[name] = this.#tool(name, t);
    return out as TOOLS;
  }

  #tool(name: string, tool: unknown): unknown {
    if (tool === null || typeof tool !== 'object') return tool;
    const execute = (tool as { execute?: unknown }).execute;
    if (typeof execute !== 'function') return tool;
    const known = this.#tools.get(tool);
    if (known !== undefined) return known;
    const run = this.#run;
    const guarded: Execute = (input, context) => {
      const callId = context?.agent?.toolCallId ?? context?.toolCallId;
      if (typeof callId !== 'string' || callId.length === 0)
        return Promise.reject(
          new InvalidOptionError('toolCallId', 'the tool-call id of the agent loop', callId),
        );
      return run.tool(
        name,
        callId,
        (call) =>
          Promise.resolve(
            (execute as Execute).call(tool, input, {
              ...context,
              // Merged when the tool reads it (CallSignal).
              get abortSignal() {
                return call.signal;
              },
            }),
          ),
        context?.abortSignal,
      );
    };
    // A copy with the same prototype and own properties (Mastra's tool marker included).
    const clone = Object.create(
      Object.getPrototypeOf(tool) as object,
      Object.getOwnPropertyDescriptors(tool),
    ) as { execute: Execute };
    clone.execute = guarded;
    this.#tools.set(tool, clone);
    return clone;
  }

  /**
   * Wraps a language model object: each call is evaluated first (capability `modelCapability`)
   * and aborted the moment a matching halt arrives; a stream that a halt cut ends with the
   * {@link HaltedError} instead of ending silently. Nothing is recorded in the ledger. KS-14.7.2,
   * KS-14.1.4
   *
   * @param model - a model object of provider spec v2, v3 or v4; a model-router id string
   *   (`'openai/gpt-5'`) must be resolved to its provider's model first
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a string id or a non-model
   */
  model<M extends MastraModel>(model: M): M {
    if (
      model === null ||
      typeof model !== 'object' ||
      typeof model.doGenerate !== 'function' ||
      typeof model.doStream !== 'function'
    )
      throw new InvalidOptionError(
        'model',
        "a language model object (a router id like 'openai/gpt-5' would bypass the guard: pass the provider's model)",
        model,
      );
    const run = this.#run;
    const view = Object.create(model) as MastraModel;
    Object.defineProperties(view, {
      doGenerate: {
        value: async (params: { abortSignal?: AbortSignal }) => {
          const r = await run.model(
            (signal) => model.doGenerate({ ...params, abortSignal: signal }),
            params.abortSignal,
          );
          r.done();
          return r.value;
        },
      },
      doStream: {
        value: async (params: { abortSignal?: AbortSignal }) => {
          const r = await run.model(
            (signal) => model.doStream({ ...params, abortSignal: signal }),
            params.abortSignal,
          );
          return {
            ...r.value,
            stream: r.value.stream.pipeThrough(haltStream(r.signal, r.done)),
          };
        },
      },
    });
    return view as M;
  }

  /**
   * A Mastra `Agent` for this run: `config` as given, with its tools ({@link MastraRun.tools}) and
   * its model ({@link MastraRun.model}) guarded. Build one per run (its tools carry the run).
   * KS-14.7.1
   *
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a model-router id or a dynamic
   *   (function) model or tool set: neither could be guarded
   */
  agent(config: MastraAgentConfig): Agent {
    const { model, tools } = config;
    if (typeof tools === 'function')
      throw new InvalidOptionError('tools', 'an object of tools (not a function)', tools);
    return new Agent({
      ...config,
      model: this.model(model) as unknown as AgentConfig['model'],
      ...(tools !== undefined ? { tools: this.tools(tools) as AgentConfig['tools'] } : {}),
    } as AgentConfig);
  }

  /**
   * `agent.generate` for this run: the run's signal passed as `abortSignal` (merged with the
   * caller's), settled by the run's signal. KS-14.7.3
   *
   * @throws {HaltedError} when a halt stopped the run (a refused or aborted tool or model call, a
   *   halt matching the run), whatever `generate` returned or threw
   */
  generate(
    agent: Pick<Agent, 'generate'>,
    messages: Messages,
    options: MastraCallOptions = {},
  ): ReturnType<Agent['generate']> {
    const generate = agent.generate.bind(agent) as Call;
    return this.#run.settle((signal) =>
      generate(messages, { ...options, abortSignal: withCaller(signal, options) }),
    ) as ReturnType<Agent['generate']>;
  }

  /**
   * `agent.stream` for this run: as {@link MastraRun.generate}, and its streams (`textStream`,
   * `fullStream`, ...) end with the {@link HaltedError} the moment the run stops, its promises
   * (`text`, `getFullOutput()`, ...) reject with it, so a halted stream never looks like a short
   * answer. KS-14.7.3
   *
   * @throws {HaltedError} when the run is halted before the stream starts
   */
  async stream(
    agent: Pick<Agent, 'stream'>,
    messages: Messages,
    options: MastraCallOptions = {},
  ): Promise<Awaited<ReturnType<Agent['stream']>>> {
    const run = this.#run;
    const stream = agent.stream.bind(agent) as Call;
    let finish!: () => void;
    const open = new Promise<void>((resolve) => (finish = resolve));
    let started!: (output: object) => void;
    const output = new Promise<object>((resolve) => (started = resolve));
    // The run watches its context for as long as the stream is open.
    const settled = run.settle(async (signal) => {
      started(
        (await stream(messages, {
          ...options,
          abortSignal: withCaller(signal, options),
        })) as object,
      );
      await open;
    });
    const first = await Promise.race([output, settled.then(() => undefined)]);
    if (first === undefined) throw run.halted ?? new Error('the stream ended before it started');
    settled.catch(() => undefined);
    return haltView(first, run, finish) as Awaited<ReturnType<Agent['stream']>>;
  }

  /**
   * Runs any call of the framework for this run (a workflow, a custom loop) and settles it by the
   * run's signal: pass the signal as `abortSignal`. KS-14.1.2
   *
   * @throws {HaltedError} when a halt stopped the run before the call settled
   */
  settle<T>(call: (abortSignal: AbortSignal) => Promise<T> | T): Promise<T> {
    return this.#run.settle(call);
  }
}

/**
 * Creates a {@link MastraRun}: guard one run of a Mastra agent.
 *
 * @param guard - the effect guard (its client and ledger)
 * @param options - the run's id, tenant, feature and capability mapping (run, tenant and feature
 *   default to the run scope's)
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option
 */
export function guardRun(guard: EffectGuard, options: MastraRunOptions = {}): MastraRun {
  return new MastraRun(guard, options);
}

/** The run's signal, and the caller's `abortSignal` too when given. */
function withCaller(signal: AbortSignal, options: { abortSignal?: AbortSignal }): AbortSignal {
  const own = options.abortSignal;
  return own === undefined ? signal : AbortSignal.any([signal, own]);
}

/**
 * A view of a stream's output whose streams end with the run's halt and whose promises reject
 * with it (Mastra ends both quietly on abort). `finish` runs once the full stream has ended.
 */
function haltView(output: object, run: AgentRun, finish: () => void): object {
  const checked = <T>(p: PromiseLike<T>): Promise<T> =>
    Promise.resolve(p).then(
      (v) => {
        if (run.halted !== undefined) throw run.halted;
        return v;
      },
      (e: unknown) => {
        throw run.halted ?? e;
      },
    );
  // Every promise the output hands out (text, usage, getFullOutput()) settles when the stream
  // ends: the first one to settle closes the run's watch.
  const done = <T>(p: Promise<T>): Promise<T> => {
    p.then(finish, finish);
    return p;
  };
  return new Proxy(output, {
    get(target, key) {
      const v = Reflect.get(target, key, target) as unknown;
      if (v instanceof ReadableStream) {
        const s = v.pipeThrough(haltStream(run.signal, finish));
        return s;
      }
      if (v instanceof Promise) return done(checked(v));
      if (typeof v === 'function')
        return (...args: unknown[]) => {
          const r = (v as (...a: unknown[]) => unknown).apply(target, args);
          return r instanceof Promise ? done(checked(r)) : r;
        };
      return v;
    },
  });
}
