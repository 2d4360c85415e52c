import type { GatewayReport } from '../protocol/acks.js';
import type { LogHead } from './flip-log-store.js';

/**
 * The fleet shared through a store (KS-6.6): a store that several control-plane replicas share
 * (PostgreSQL) also carries their workers' acknowledgements and lease renewals, and each
 * replica's heartbeat, so a flip's fleet answer counts every worker on every replica. A store
 * that only one process uses (memory, file) does not implement it, and the control plane then
 * keeps the fleet in its own memory as before.
 *
 * The channel is I/O only; what the events mean for leases is decided by the control plane's
 * pure `SharedFleet` (src/server/shared-fleet.ts) on its own monotonic clock: times written by
 * another replica are never compared with this one's.
 */
export interface FleetChannelStore {
  /**
   * Registers this replica and starts delivering fleet events to `onEvent`; the channel
   * heartbeats every `beatMs` until closed.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` when the store cannot be reached
   */
  openFleetChannel(options: FleetChannelOptions): Promise<FleetChannel>;
}

/** Options of {@link FleetChannelStore.openFleetChannel}. */
export interface FleetChannelOptions {
  /** This replica's id: unique per running control plane (a new one each start). */
  readonly replicaId: string;
  /** The URL this replica serves, for operators reading the fleet. */
  readonly url: string;
  /** The head this replica applied when it opens the channel (its first heartbeat says it). */
  readonly head?: number;
  /** Called with every fleet event, in the order the store committed them. */
  readonly onEvent: (event: FleetEvent) => void;
  /** Heartbeat interval of this replica's registration. @default 250 (ms) */
  readonly beatMs?: number;
  /** Where connection trouble is reported. */
  readonly logger?: { warn(message: string): void };
}

/** One acknowledgement as it is shared with the other replicas. */
export interface SharedAck {
  readonly workerId: string;
  readonly release?: string | undefined;
  /** The highest seq the worker applied. */
  readonly seq: number;
  /** Streams the worker holds open on the replica that received the ack. */
  readonly connections: number;
  /** KS-6.5 flips it received and does not enforce. */
  readonly unenforced?: readonly { readonly seq: number; readonly reason: string }[] | undefined;
  /**
   * KS-15.5.3 a gateway's report of its seams and the calls in flight at each, as of this
   * acknowledgement: every replica lists the gateway with it, not only the one that received it.
   */
  readonly gateway?: GatewayReport | undefined;
}

/** A shared acknowledgement as another replica receives it. */
export interface ObservedAck extends SharedAck {
  /** How many renewals the store recorded for this worker so far (tells a repeat from a new one). */
  readonly renewals: number;
}

/** A replica's registration as read from the store. */
export interface ReplicaRow {
  readonly replica: string;
  readonly url: string;
  /** Heartbeat counter: it grows by one per heartbeat (never a time). */
  readonly beat: number;
  /** The head seq the replica said it applied last. */
  readonly head: number;
}

/** A worker's last shared acknowledgement as read from the store. */
export interface WorkerRow extends ObservedAck {
  readonly replica: string;
  /** The head of the log when the store committed the acknowledgement (KS-6.6.3). */
  readonly answeredHead: number;
}

/**
 * What the channel delivers. `acks` and `beat` are each one commit; `barrier` says every commit
 * before this replica's own heartbeat with `head` has been delivered (KS-6.6.4); `sync` is a
 * consistent read of everything (after the channel lost events or on start), with the barrier it
 * establishes.
 */
export type FleetEvent =
  | {
      readonly kind: 'acks';
      readonly replica: string;
      /** The log's head when the store committed them (KS-6.6.3). */
      readonly answeredHead: number;
      readonly acks: readonly ObservedAck[];
    }
  | {
      readonly kind: 'beat';
      readonly replica: string;
      readonly url: string;
      readonly beat: number;
      readonly head: number;
    }
  | { readonly kind: 'left'; readonly replica: string }
  | { readonly kind: 'barrier'; readonly head: number }
  | {
      readonly kind: 'sync';
      readonly replicas: readonly ReplicaRow[];
      readonly workers: readonly WorkerRow[];
      readonly barrier: number;
    }
  | { readonly kind: 'trouble'; readonly message: string | undefined };

/** A replica's connection to the shared fleet. */
export interface FleetChannel {
  readonly replicaId: string;
  /**
   * Records acknowledgements so every replica sees them, and resolves once they are committed
   * with the log's head at that commit; the control plane answers the worker only then
   * (KS-6.6.3).
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE`: nothing may be answered as renewed
   */
  renew(acks: readonly SharedAck[]): Promise<LogHead>;
  /** This replica applied `seq`: say so in a heartbeat soon (it is the barrier of KS-6.6.4). */
  publishHead(seq: number): void;
  /** Stops heartbeating, leaves the fleet (others stop waiting for it) and releases connections. */
  close(): Promise<void>;
}

/** Whether a store shares the fleet (KS-6.6). */
export function isFleetChannelStore(store: unknown): store is FleetChannelStore {
  return (
    typeof store === 'object' &&
    store !== null &&
    typeof (store as { openFleetChannel?: unknown }).openFleetChannel === 'function'
  );
}
