import {
  TypeMismatchError,
  type BeforeHookContext,
  type EvaluationDetails,
  type FlagValue,
  type Hook,
  type HookContext,
} from '@openfeature/server-sdk';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError } from '../errors.js';
import { isKillFlag } from '../model/flags.js';

/** Where the hook writes its warnings. */
export interface KillSwitchHookLogger {
  warn(message: string): void;
}

/** Options of {@link KillSwitchHook}. */
export interface KillSwitchHookOptions {
  /** @default console (prefixed `[kill-switch]`) */
  readonly logger?: KillSwitchHookLogger;
  /**
   * Best effort, on top of the warning: in the `finally` stage, overwrite the value of a kill
   * flag whose evaluation failed (an `errorCode`, or a non-boolean value) with `true`. This works
   * with @openfeature/server-sdk 1.23, which hands `finally` the very details object it returns;
   * it is not part of the OpenFeature spec, so it is a safety net and not the guarantee (use
   * {@link evaluateKillFlag} or {@link killSwitchClient} for that). KS-3.6.5
   * @default true
   */
  readonly correct?: boolean;
  /** How many distinct (flag, call site) pairs to remember for warn-once. @default 1000 */
  readonly maxCallSites?: number;
}

/**
 * An OpenFeature hook for kill flags (`kill-switch`, `kill-switch.<level>`); it leaves every other
 * flag alone. It warns (once per flag and call site) when a kill flag is evaluated with a default
 * other than `true`, since the SDK returns that default on every abnormal path (no provider, not
 * ready, FATAL, a throwing hook or resolver, any `errorCode`). It rejects a non-boolean value in
 * `after` (a TYPE_MISMATCH, so the SDK answers the default), logs in `error` what the caller got,
 * and in `finally` corrects a failed evaluation to halted (see {@link KillSwitchHookOptions.correct}).
 * KS-3.6.4
 *
 * A hook cannot guarantee a halted answer: per the spec it does not choose the value, and the
 * SDK skips the resolver (and may skip `before` of later hooks) on its abnormal paths. The
 * guarantee is {@link evaluateKillFlag}. KS-3.6.3
 *
 * @example
 * ```ts
 * OpenFeature.addHooks(new KillSwitchHook());
 * ```
 */
export class KillSwitchHook implements Hook {
  readonly #logger: KillSwitchHookLogger;
  readonly #correct: boolean;
  readonly #maxCallSites: number;
  readonly #warned = new Set<string>();
  /** Flags currently failing, so an outage logs once, not once per evaluation. */
  readonly #failing = new Set<string>();

  /**
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` for a logger without `warn` or a bad `maxCallSites`
   */
  constructor(options: KillSwitchHookOptions = {}) {
    if (options.logger !== undefined && typeof options.logger.warn !== 'function') {
      throw new InvalidOptionError(
        'logger',
        'an object with a warn(message) function',
        options.logger,
      );
    }
    if (
      options.maxCallSites !== undefined &&
      (!Number.isInteger(options.maxCallSites) || options.maxCallSites < 1)
    ) {
      throw new InvalidOptionError('maxCallSites', 'a positive integer', options.maxCallSites);
    }
    if (options.correct !== undefined && typeof options.correct !== 'boolean') {
      throw new InvalidOptionError('correct', 'a boolean', options.correct);
    }
    this.#logger = options.logger ?? { warn: (m) => console.warn(`[kill-switch] ${m}`) };
    this.#correct = options.correct ?? true;
    this.#maxCallSites = options.maxCallSites ?? 1000;
  }

  /** KS-3.6.4: warn once per flag and call site when the default is not `true`. */
  before(hookContext: BeforeHookContext): void {
    if (hookContext.defaultValue === true || !isKillFlag(hookContext.flagKey)) return;
    // Only the misuse path pays for a stack trace; the SDK's own frames take more than the
    // default 10, so look deeper for the caller.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 40;
    const stack = new Error().stack;
    Error.stackTraceLimit = limit;
    const site = callSite(stack);
    const key = `${hookContext.flagKey}\u0000${site}`;
    if (this.#warned.has(key) || this.#warned.size >= this.#maxCallSites) return;
    this.#warned.add(key);
    this.#logger.warn(
      `kill flag ${hookContext.flagKey} evaluated with default ${JSON.stringify(hookContext.defaultValue)} at ${site}: ` +
        'the SDK returns the default when no provider is bound, while it initialises, when it is FATAL ' +
        'and when a hook or the resolver fails, so this check can fail open. Pass true, or use evaluateKillFlag().',
    );
  }

  /** KS-3.6.4: a non-boolean answer is an error, not a truthy or falsy accident. */
  after(hookContext: Readonly<HookContext>, details: EvaluationDetails<FlagValue>): void {
    if (typeof details.value === 'boolean' || !isKillFlag(hookContext.flagKey)) return;
    throw new TypeMismatchError(
      `kill flag ${hookContext.flagKey} resolved to a ${typeof details.value}, not a boolean`,
    );
  }

  /** Logs (once per outage and flag) what the caller gets when the evaluation failed. */
  error(hookContext: Readonly<HookContext>, error: unknown): void {
    const key = hookContext.flagKey;
    if (!isKillFlag(key) || this.#failing.has(key)) return;
    this.#failing.add(key);
    const message = error instanceof Error ? error.message : String(error);
    const outcome =
      hookContext.defaultValue === true
        ? 'the answer failed closed (halted)'
        : this.#correct
          ? `the caller's default ${JSON.stringify(hookContext.defaultValue)} is being corrected to halted`
          : `the caller gets its default ${JSON.stringify(hookContext.defaultValue)}: FAILED OPEN`;
    this.#logger.warn(`evaluation of kill flag ${key} failed (${message}); ${outcome}`);
  }

  /** KS-3.6.5: best-effort correction of a failed evaluation to halted. */
  finally(hookContext: Readonly<HookContext>, details: EvaluationDetails<FlagValue>): void {
    const key = hookContext.flagKey;
    if (!isKillFlag(key)) return;
    const failed = details.errorCode !== undefined || typeof details.value !== 'boolean';
    if (!failed) {
      if (this.#failing.delete(key)) this.#logger.warn(`kill flag ${key} evaluates normally again`);
      return;
    }
    if (!this.#correct || details.value === true || hookContext.flagValueType !== 'boolean') return;
    try {
      details.value = true;
      details.variant = 'fail-closed';
    } catch {
      // A frozen details object (a later SDK): the warning above is all a hook can do.
    }
  }
}

const SELF_URL = import.meta.url;
const SELF_PATH = SELF_URL.startsWith('file:') ? fileURLToPath(SELF_URL) : SELF_URL;

/** The first stack frame outside the SDK, this hook and Node's internals. */
function callSite(stack: string | undefined): string {
  if (stack === undefined) return '(unknown call site)';
  const lines = stack.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (
      line.includes('@openfeature') ||
      line.includes(SELF_PATH) ||
      line.includes(SELF_URL) ||
      line.includes('node:internal') ||
      line.includes('<anonymous>')
    ) {
      continue;
    }
    return line.replace(/^at\s+/, '');
  }
  return '(unknown call site)';
}
