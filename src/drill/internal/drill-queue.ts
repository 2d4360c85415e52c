import { ProviderEvents, type Client } from '@openfeature/server-sdk';
import type { HaltWatcher } from '../../guard/halt-watcher.js';
import type { KillDecision } from '../../guard/kill-decision.js';
import { selectorMatches, type KillContext, type Selector } from '../../model/selector.js';
import type { QueueDepth } from './protocol.js';

/** A queued task of the synthetic traffic. */
export interface DrillTask {
  readonly id: string;
  readonly runId: string;
  readonly step: string;
  readonly ctx: KillContext & { readonly capability: string };
  readonly enqueuedAt: number;
}

/** What the queue tells the worker (for its event log). */
export interface DrillQueueHooks {
  /** Tasks discarded (journalled and removed) by a halt in `discard` mode. */
  onDiscard(tasks: readonly DrillTask[], decision: KillDecision): void | Promise<void>;
}

/**
 * The drill worker's in-memory task queue, gated by the kill switch the way DESIGN section 1.2
 * says: an enqueue whose context is halted is refused; when a matching halt arrives, queued tasks
 * follow the halt's mode (`discard`: journalled and removed; `hold`: kept, paused; `drain`: kept
 * and run, each effect still passing the guard). A context that is halted because the kill state
 * is stale (no flip, no mode) is held, never discarded: a blip must not throw work away.
 *
 * This is the drill's own stand-in for a production queue adapter; it exposes exactly what the
 * drill measures (depth at T+0 and T+N, tasks discarded).
 */
export class DrillQueue {
  readonly #tasks: DrillTask[] = [];
  readonly #held = new Set<string>();
  /** Journal of discarded tasks: enough to enqueue them again on resume. */
  readonly journal: DrillTask[] = [];
  readonly #watcher: HaltWatcher;
  readonly #client: Client;
  readonly #hooks: DrillQueueHooks;
  readonly #onChange = () => void this.#reconcile();
  #reconciling: Promise<void> | undefined;
  #again = false;

  constructor(client: Client, watcher: HaltWatcher, hooks: DrillQueueHooks) {
    this.#client = client;
    this.#watcher = watcher;
    this.#hooks = hooks;
    for (const e of [
      ProviderEvents.ConfigurationChanged,
      ProviderEvents.Stale,
      ProviderEvents.Error,
      ProviderEvents.Ready,
    ]) {
      client.addHandler(e, this.#onChange);
    }
  }

  /** Enqueues a task unless its context is halted now. @returns the refusal, or undefined */
  async enqueue(task: DrillTask): Promise<KillDecision | undefined> {
    const d = await this.#watcher.evaluate(task.ctx);
    if (d.halted) return d;
    this.#tasks.push(task);
    return undefined;
  }

  /** Takes the oldest task that is not held. */
  take(): DrillTask | undefined {
    const i = this.#tasks.findIndex((t) => !this.#held.has(t.id));
    if (i < 0) return undefined;
    return this.#tasks.splice(i, 1)[0];
  }

  /** Depth now, and how many queued tasks a selector matches. */
  depth(selector: Selector, now: number): QueueDepth {
    let matching = 0;
    for (const t of this.#tasks) if (selectorMatches(selector, t.ctx)) matching++;
    return { at: now, total: this.#tasks.length, matching, held: this.#held.size };
  }

  close(): void {
    for (const e of [
      ProviderEvents.ConfigurationChanged,
      ProviderEvents.Stale,
      ProviderEvents.Error,
      ProviderEvents.Ready,
    ]) {
      this.#client.removeHandler(e, this.#onChange);
    }
  }

  /** Re-evaluates every queued task after a change; runs one pass at a time, then once more. */
  #reconcile(): Promise<void> {
    if (this.#reconciling) {
      this.#again = true;
      return this.#reconciling;
    }
    this.#reconciling = (async () => {
      do {
        this.#again = false;
        await this.#pass();
      } while (this.#again);
    })().finally(() => {
      this.#reconciling = undefined;
    });
    return this.#reconciling;
  }

  async #pass(): Promise<void> {
    const snapshot = [...this.#tasks];
    const decisions = await Promise.all(snapshot.map((t) => this.#watcher.evaluate(t.ctx)));
    const discard: DrillTask[] = [];
    let decision: KillDecision | undefined;
    snapshot.forEach((t, i) => {
      const d = decisions[i]!;
      if (!d.halted) {
        this.#held.delete(t.id);
        return;
      }
      const mode = d.flip?.mode ?? 'hold';
      if (mode === 'discard') {
        discard.push(t);
        decision ??= d;
      } else if (mode === 'hold') {
        this.#held.add(t.id);
      }
      // drain: keep it runnable; the guard still refuses its effect while halted.
    });
    if (discard.length === 0) return;
    const gone = new Set(discard.map((t) => t.id));
    // Journal first, then remove: a discarded task is never lost without a record.
    this.journal.push(...discard);
    for (let i = this.#tasks.length - 1; i >= 0; i--)
      if (gone.has(this.#tasks[i]!.id)) this.#tasks.splice(i, 1);
    for (const id of gone) this.#held.delete(id);
    await this.#hooks.onDiscard(discard, decision!);
  }
}
