import type { FlipRecord } from '../model/flip-record.js';
import type { KillSnapshot } from '../model/kill-state.js';

/**
 * The life of a flip source (an explicit state machine):
 * `connecting` -> `open` <-> `stale` -> `closed`. Only `open` means fresh; a provider answers
 * halted in every other state. KS-3.3.1
 */
export const SourceStatus = {
  CONNECTING: 'connecting',
  OPEN: 'open',
  STALE: 'stale',
  CLOSED: 'closed',
} as const;
export type SourceStatus = (typeof SourceStatus)[keyof typeof SourceStatus];

/** What a flip source tells its consumer (the provider). */
export interface FlipSourceListener {
  /** Replace the whole state (first state, or a resynchronisation after a gap). */
  onSnapshot(snapshot: KillSnapshot): void;
  /** The next record; sources deliver in seq order, and the consumer checks again. */
  onFlip(record: FlipRecord): void;
  /** The source's freshness changed; `detail` says why (for logs and STALE events). */
  onStatus(status: SourceStatus, detail?: string): void;
}

/**
 * Where a provider gets the kill state from: a local store, or a control plane over SSE. A
 * source that can acknowledge (the remote one) does so after `onFlip` returns, which is after
 * the provider applied the record.
 */
export interface FlipSource {
  /** For logs and `providerMetadata` (`store:file`, `remote:http://...`). */
  readonly name: string;
  /** Starts delivering; resolves once started (not necessarily once fresh). */
  start(listener: FlipSourceListener): Promise<void>;
  /** Stops delivering and releases connections; the source reports `closed`. */
  stop(): Promise<void>;
}
