import {
  generateText,
  streamText,
  wrapLanguageModel,
  type LanguageModel,
  type LanguageModelMiddleware,
  type StreamTextTransform,
  type ToolSet,
} from 'ai';
import { InvalidOptionError, type HaltedError } from '../../errors.js';
import type { EffectGuard } from '../../guard/effect-guard.js';
import type { Lineage } from '../../lineage/lineage.js';
import type { KillContext } from '../../model/selector.js';
import { AgentRun, type AgentRunOptions } from '../internal/agent-run.js';
import { haltStream } from '../internal/halt-stream.js';

/** Options of {@link guardRun}: the run's identity and how tools map to capabilities. */
export type AiSdkRunOptions = AgentRunOptions;

// The provider-spec types, read through `ai` (which depends on `@ai-sdk/provider`), so a project
// that installed only `ai` type-checks against this module.
type WrapGenerate = Parameters<NonNullable<LanguageModelMiddleware['wrapGenerate']>>[0];
type WrapStream = Parameters<NonNullable<LanguageModelMiddleware['wrapStream']>>[0];
/** A language model of the current provider specification (v4). */
export type LanguageModelV4 = WrapGenerate['model'];
type LanguageModelV4CallOptions = WrapGenerate['params'];
type LanguageModelV4StreamResult = Awaited<ReturnType<WrapStream['doStream']>>;

type GenerateTextOptions = Parameters<typeof generateText>[0];
type StreamTextOptions = Parameters<typeof streamText>[0];

/**
 * One run of a Vercel AI SDK (`ai` 7) agent under the kill switch. Its tools are guarded
 * effects, its model calls are checked and aborted at a halt, and a halt stops the whole run:
 * the run's own signal aborts, the framework stops at its next check, and the caller receives
 * the {@link HaltedError} naming the flip (never the `tool-error` the SDK would feed back to the
 * model). KS-14.2, KS-14.1.2
 *
 * @example
 * ```ts
 * import { guardRun } from 'openfeature-kill-switch/ai-sdk';
 * const run = guardRun(guard, { runId: 'ticket-42', tenant: 'acme' });
 * const { text } = await run.generateText({ model, tools, prompt, stopWhen: isStepCount(10) });
 * ```
 */
export class AiSdkRun {
  readonly #run: AgentRun;
  readonly #guard: EffectGuard;
  readonly #options: AiSdkRunOptions;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option */
  constructor(guard: EffectGuard, options: AiSdkRunOptions = {}) {
    this.#run = new AgentRun(guard, options);
    this.#guard = guard;
    // A child inherits the mapping options, never the parent's run id, tenant or signal.
    const { runId: _r, signal: _s, tenant: _t, feature: _f, ...inherited } = options;
    this.#options = inherited;
  }

  /** The run's lineage (what crosses to another process with its work). */
  get lineage(): Lineage {
    return this.#run.lineage;
  }

  /**
   * Runs a sub-agent as a child of this run (an agent called from a tool, a fanned-out task):
   * the spawn is a guarded effect of this run (refused while it or an ancestor is halted), the
   * child's id derives from this run's id and `step` (use the tool-call id), and `fn` gets an
   * {@link AiSdkRun} of the child: a halt on this run or any ancestor stops the child, and the
   * child's halt reaches this run as the tool's {@link HaltedError}, which stops it too (the SDK
   * would otherwise feed it back and the model would call the sub-agent again). KS-14.1.6
   *
   * @example
   * ```ts
   * research: tool({ inputSchema, execute: (input, { toolCallId }) =>
   *   run.child(toolCallId, (sub) => sub.generateText({ model, tools, prompt: input.topic })) })
   * ```
   * @throws {HaltedError} `KS_HALTED` when the spawn is refused, `KS_ABORTED` when halted in flight
   */
  child<T>(step: string, fn: (sub: AiSdkRun) => Promise<T> | T): Promise<T> {
    return this.#run.child(step, (_run, c) =>
      fn(new AiSdkRun(this.#guard, { ...this.#options, signal: c.signal })),
    );
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
   * Guards every tool that has an `execute`: each call is a guarded effect (capability from the
   * tool's name, key from the run and `toolCallId`), its `abortSignal` fires at a matching halt
   * (the SDK passes none when the caller gave none: this one is always set), and a refusal or
   * abort stops the run. Tools without `execute` (client-side, provider-executed) pass unchanged.
   * A tool that returns an async iterable is run to its end inside the guard; its last value is
   * the result (preliminary results are not streamed). KS-14.2.1
   *
   * @param tools - the tool set, as passed to `generateText`
   * @returns a tool set of the same shape
   */
  tools<TOOLS extends ToolSet>(tools: TOOLS): TOOLS {
    if (tools === null || typeof tools !== 'object')
      throw new InvalidOptionError('tools', 'a ToolSet object', tools);
    const out: Record<string, unknown> = {};
    for (const [name, t] of Object.entries(tools)) {
      const execute = (t as { execute?: unknown }).execute;
      if (typeof execute !== 'function') {
        out[name] = t;
        continue;
      }
      out[name] = {
        ...t,
        execute: (input: unknown, options: { toolCallId: string; abortSignal?: AbortSignal }) =>
          this.#run.tool(
            name,
            options.toolCallId,
            (call) =>
              lastValue(
                (execute as (i: unknown, o: unknown) => unknown).call(t, input, {
                  ...options,
                  // Merged when the tool reads it (most pass it on at once; a no-op never does).
                  get abortSignal() {
                    return call.signal;
                  },
                }),
              ),
            options.abortSignal,
          ),
      };
    }
    return out as TOOLS;
  }

  /**
   * Wraps a language model: each call is evaluated first (capability `modelCapability`) and is
   * aborted the moment a matching halt arrives; a stream that a halt cut ends with the
   * {@link HaltedError} instead of ending silently. Nothing is recorded in the ledger (a model
   * call is not a side effect). KS-14.2.2, KS-14.1.4
   *
   * @param model - a model object (v2, v3 or v4); a string id must be resolved by its provider first
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a string id or a non-model
   */
  model(model: LanguageModel): LanguageModelV4 {
    if (model === null || typeof model !== 'object' || typeof model.doGenerate !== 'function')
      throw new InvalidOptionError(
        'model',
        'a language model object (resolve a string id with its provider, e.g. gateway(id))',
        model,
      );
    const base = wrapLanguageModel({ model, middleware: [] });
    const run = this.#run;
    return {
      specificationVersion: 'v4',
      provider: base.provider,
      modelId: base.modelId,
      get supportedUrls() {
        return base.supportedUrls;
      },
      async doGenerate(params: LanguageModelV4CallOptions) {
        const r = await run.model(
          (signal) => base.doGenerate({ ...params, abortSignal: signal }),
          params.abortSignal,
        );
        r.done();
        return r.value;
      },
      async doStream(params: LanguageModelV4CallOptions): Promise<LanguageModelV4StreamResult> {
        const r = await run.model(
          (signal) => base.doStream({ ...params, abortSignal: signal }),
          params.abortSignal,
        );
        return { ...r.value, stream: r.value.stream.pipeThrough(haltStream(r.signal, r.done)) };
      },
    };
  }

  /**
   * `generateText` from `ai` for this run: model and tools guarded, the run's signal passed as
   * `abortSignal` (merged with the caller's), settled by the run's signal. KS-14.2.3
   *
   * @throws {HaltedError} when a halt stopped the run (a refused or aborted tool, a refused or
   *   aborted model call, a halt matching the run), whatever `generateText` returned or threw
   */
  generateText<O extends GenerateTextOptions>(options: O): ReturnType<typeof generateText> {
    return this.#run.settle((signal) =>
      generateText(this.#prepare(options, signal) as GenerateTextOptions),
    ) as ReturnType<typeof generateText>;
  }

  /**
   * `streamText` from `ai` for this run: as {@link AiSdkRun.generateText}, and a stream transform
   * that ends every stream of the result (`textStream`, `fullStream`, `text`, ...) with the
   * {@link HaltedError} the moment the run stops, so a halted stream never looks like a short
   * answer. KS-14.2.3
   */
  streamText<O extends StreamTextOptions>(options: O): ReturnType<typeof streamText> {
    const run = this.#run;
    let finish!: () => void;
    const open = new Promise<void>((resolve) => (finish = resolve));
    // The run watches its context for as long as the stream is open.
    void run.settle(() => open).catch(() => undefined);
    const prepared = this.#prepare(options, run.frameworkSignal) as StreamTextOptions;
    const userTransforms = options.experimental_transform;
    const haltTransform: StreamTextTransform<ToolSet> = () => haltStream(run.signal, finish);
    return streamText({
      ...prepared,
      experimental_transform: [
        ...(userTransforms === undefined
          ? []
          : Array.isArray(userTransforms)
            ? userTransforms
            : [userTransforms]),
        haltTransform,
      ],
    } as StreamTextOptions);
  }

  /**
   * Runs any call of the framework for this run (an agent's `generate`, a custom loop) and
   * settles it by the run's signal: pass the signal as `abortSignal`. KS-14.1.2
   *
   * @example
   * ```ts
   * const agent = new ToolLoopAgent({ model: run.model(model), tools: run.tools(tools) });
   * const result = await run.settle((abortSignal) => agent.generate({ prompt, abortSignal }));
   * ```
   * @throws {HaltedError} when a halt stopped the run before the call settled
   */
  settle<T>(call: (abortSignal: AbortSignal) => Promise<T> | T): Promise<T> {
    return this.#run.settle(call);
  }

  #prepare<O extends { model: LanguageModel; tools?: ToolSet }>(
    options: O,
    signal: AbortSignal,
  ): O {
    const abortSignal = (options as { abortSignal?: AbortSignal }).abortSignal;
    return {
      ...options,
      model: this.model(options.model),
      ...(options.tools !== undefined ? { tools: this.tools(options.tools) } : {}),
      abortSignal: abortSignal === undefined ? signal : AbortSignal.any([signal, abortSignal]),
    };
  }
}

/**
 * Creates an {@link AiSdkRun}: guard one run of an AI SDK agent.
 *
 * @param guard - the effect guard (its client and ledger)
 * @param options - the run's id, tenant, feature and capability mapping (run, tenant and feature
 *   default to the run scope's)
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad guard or option
 */
export function guardRun(guard: EffectGuard, options: AiSdkRunOptions = {}): AiSdkRun {
  return new AiSdkRun(guard, options);
}

/** The last value of an async iterable (a streaming tool), or the value (no extra async frame). */
function lastValue(result: unknown): Promise<unknown> {
  if (result !== null && typeof result === 'object' && Symbol.asyncIterator in result)
    return drain(result as AsyncIterable<unknown>);
  return Promise.resolve(result);
}

async function drain(values: AsyncIterable<unknown>): Promise<unknown> {
  let last: unknown;
  for await (const v of values) last = v;
  return last;
}
