import { ProviderEvents, type Client, type EventDetails } from '@openfeature/server-sdk';
import { KILL_SWITCH_FLAG } from '../model/flags.js';
import type { KillContext } from '../model/selector.js';
import { evaluateKill, evaluateKillEager, type KillDecision } from './kill-decision.js';
import { noteContext, registerActivitySource, type ActivityKind } from './worker-activity.js';

/** Called once when a watched context becomes halted. */
export type HaltListener = (decision: KillDecision) => void;

interface Watch {
  readonly ctx: KillContext;
  readonly listener: HaltListener;
  readonly kind: ActivityKind;
}

/**
 * Tells watchers the moment their context becomes halted, through any OpenFeature client: on
 * every configuration change that may touch `kill-switch`, on STALE and on ERROR it re-evaluates
 * each watched context and fires (once) for those now halted. The guard, retries, timers and
 * queues all hang off one watcher per client. KS-4.2.1
 *
 * Register the watch *before* the pre-dispatch check, so a halt that lands between the two is
 * not missed.
 *
 * @example
 * ```ts
 * const watcher = new HaltWatcher(client);
 * const stop = watcher.watch({ runId: 'r1' }, (d) => controller.abort(d));
 * ```
 */
export class HaltWatcher {
  readonly #client: Client;
  readonly #watches = new Set<Watch>();
  readonly #onEvent: (details?: EventDetails) => void;
  readonly #unregister: () => void;
  #closed = false;

  constructor(client: Client) {
    this.#client = client;
    this.#onEvent = (details) => {
      const changed = (details as { flagsChanged?: string[] } | undefined)?.flagsChanged;
      // A provider that names the changed flags lets us skip changes to other flags.
      if (Array.isArray(changed) && changed.length > 0 && !changed.some(isKillKey)) return;
      void this.recheck();
    };
    for (const e of [
      ProviderEvents.ConfigurationChanged,
      ProviderEvents.Stale,
      ProviderEvents.Error,
    ]) {
      client.addHandler(e, this.#onEvent);
    }
    // KS-16.4.1: what a halt matched in this process is read from the watches.
    this.#unregister = registerActivitySource({
      forEachWatched: (visit) => {
        for (const w of this.#watches) visit(w.ctx, w.kind);
      },
    });
  }

  /** Number of active watches. */
  get size(): number {
    return this.#watches.size;
  }

  /**
   * Watches a context; the listener fires at most once.
   *
   * @param kind - what the watch is for, as a halt's match report counts it (KS-16.4.1):
   *   work in flight (the default) or work queued (tasks, pending retries and timers)
   * @returns a function that removes the watch
   */
  watch(ctx: KillContext, listener: HaltListener, kind: ActivityKind = 'in-flight'): () => void {
    const w: Watch = { ctx, listener, kind };
    this.#watches.add(w);
    return () => this.#watches.delete(w);
  }

  /** Evaluates the kill flag for a context (failing closed). */
  evaluate(ctx: KillContext): Promise<KillDecision> {
    noteContext(ctx);
    return evaluateKill(this.#client, ctx);
  }

  /**
   * {@link evaluate}, answered at once when the client can evaluate without the SDK's promise
   * chain (KS-4.7.2), else its promise: the same decision, one await fewer on the guard's path.
   */
  evaluateEager(ctx: KillContext): KillDecision | Promise<KillDecision> {
    noteContext(ctx);
    return evaluateKillEager(this.#client, ctx);
  }

  /** Re-evaluates every watch now; resolves when listeners of newly halted ones have run. */
  async recheck(): Promise<void> {
    if (this.#closed) return;
    const watches = [...this.#watches];
    await Promise.all(
      watches.map(async (w) => {
        const d = await evaluateKill(this.#client, w.ctx);
        if (d.halted && this.#watches.delete(w)) {
          try {
            w.listener(d);
          } catch (err) {
            queueMicrotask(() => {
              throw err;
            });
          }
        }
      }),
    );
  }

  /** Removes the event handlers and every watch. */
  close(): void {
    this.#closed = true;
    this.#unregister();
    for (const e of [
      ProviderEvents.ConfigurationChanged,
      ProviderEvents.Stale,
      ProviderEvents.Error,
    ]) {
      this.#client.removeHandler(e, this.#onEvent);
    }
    this.#watches.clear();
  }
}

function isKillKey(k: string): boolean {
  return k === KILL_SWITCH_FLAG || k.startsWith(`${KILL_SWITCH_FLAG}.`);
}
