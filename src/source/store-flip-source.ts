import { KillState } from '../model/kill-state.js';
import type { FlipRecord } from '../model/flip-record.js';
import type { FlipLogStore } from '../store/flip-log-store.js';
import { SourceStatus, type FlipSource, type FlipSourceListener } from './flip-source.js';

/**
 * A flip source that follows a store in this process: a snapshot folded from the log, then each
 * appended record. Records appended while the snapshot is being read are buffered, so none is
 * missed or delivered twice. If reading the store fails, the source reports `stale` (the
 * provider fails closed) and retries.
 *
 * @example
 * ```ts
 * const provider = new KillSwitchProvider({ source: new StoreFlipSource(store) });
 * ```
 */
export class StoreFlipSource implements FlipSource {
  readonly name: string;
  readonly #store: FlipLogStore;
  readonly #retryMs: number;
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #listener: FlipSourceListener | undefined;

  /**
   * @param store - an opened or unopened store (it is opened on start)
   * @param options.retryMs - wait between attempts when reading the store fails. @default 500 ms
   */
  constructor(store: FlipLogStore, options: { readonly retryMs?: number } = {}) {
    this.#store = store;
    this.name = `store:${store.kind}`;
    this.#retryMs = options.retryMs ?? 500;
  }

  async start(listener: FlipSourceListener): Promise<void> {
    this.#stopped = false;
    this.#listener = listener;
    listener.onStatus(SourceStatus.CONNECTING);
    await this.#attach(listener);
  }

  async #attach(listener: FlipSourceListener): Promise<void> {
    if (this.#stopped) return;
    let seq = Number.POSITIVE_INFINITY;
    const buffered: FlipRecord[] = [];
    try {
      await this.#store.open();
      // stop() may have run while the store was opening: attach nothing then.
      if (this.#stopped) return;
      this.#unsubscribe = this.#store.subscribe((r) => {
        if (this.#stopped) return;
        if (seq === Number.POSITIVE_INFINITY) buffered.push(r);
        else if (r.seq > seq) {
          seq = r.seq;
          listener.onFlip(r);
        }
      });
      const state = KillState.fold(await this.#store.read());
      if (this.#stopped) return;
      listener.onSnapshot(state.toSnapshot());
      seq = state.seq;
      for (const r of buffered) {
        if (r.seq > seq) {
          seq = r.seq;
          listener.onFlip(r);
        }
      }
      listener.onStatus(SourceStatus.OPEN);
    } catch (err) {
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
      if (this.#stopped) return;
      listener.onStatus(SourceStatus.STALE, `store unreadable: ${(err as Error).message}`);
      this.#timer = setTimeout(() => void this.#attach(listener), this.#retryMs);
      this.#timer.unref?.();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    // The FlipSource contract: a stopped source reports `closed` (once).
    const listener = this.#listener;
    this.#listener = undefined;
    listener?.onStatus(SourceStatus.CLOSED);
  }
}
