import type { KillContext, Selector } from '../../model/selector.js';
import type { Traffic } from '../scenario.js';

export { WorkerVariant, WORKER_VARIANTS } from '../worker/variants.js';
import type { WorkerVariant } from '../worker/variants.js';

/** What the orchestrator hands a worker at start. */
export interface WorkerConfig {
  readonly workerId: string;
  readonly release: string;
  /** Control plane URLs (the remote flip source's `urls`). */
  readonly urls: readonly string[];
  readonly token?: string;
  /**
   * The control plane's public key (PEM) when it signs (KS-17.7.9, KS-17.7.10): the worker then
   * applies only signed snapshots and records and renews its lease only on signed answers, as a
   * production worker given `publicKeys` does.
   */
  readonly publicKeys?: string;
  readonly sinkUrl: string;
  readonly llmUrl: string;
  /** Where the worker writes its side-effect ledger (JSON lines). */
  readonly ledgerPath: string;
  readonly traffic: Traffic;
  readonly seed: number;
  readonly variant: WorkerVariant;
  /** Lease of the remote source, ms. */
  readonly staleAfterMs: number;
  readonly heartbeatMs: number;
  /** Every worker of the drill, in order: a run tree spreads its children over them. @default [workerId] */
  readonly fleet?: readonly string[];
}

/** What a run tree's queued child task carries (harness data; the lineage travels apart). */
export interface TreeTask {
  /** The spawning step (`c3`, `g3`): with the parent's id it derives the child's id. */
  readonly step: string;
  /** Depth of the child in the tree (the root is 1), as the spawner knows it. */
  readonly depth: number;
  /** The child's index among the root's children (a grandchild keeps its parent's). */
  readonly index: number;
  /** Which spawn of the root (after each lifted halt the root spawns its children again). */
  readonly epoch: number;
}

/** A worker's run-tree runs right before a run-tree lever's flip. */
export interface TreeAtFlip {
  readonly at: number;
  /** Tree child runs executing (including those waiting on a timer or a retry). */
  readonly running: number;
  /** Tree child runs waiting in the worker's tree queue. */
  readonly queued: number;
  /** Running tree runs waiting on a follow-up timer or a retry's back-off. */
  readonly waiting: number;
  /**
   * Grandchild runs (depth 3, spawned by a child on another worker) queued or running here: the
   * tree has its full depth once every worker holds one (a lineage a spawner dropped is carried by
   * exactly these, KS-9.4.5).
   */
  readonly grandchildren: number;
}

/** Something a worker saw, with its time on the drill clock. */
export type WorkerEvent =
  | { readonly t: 'applied'; readonly at: number; readonly seq: number }
  | { readonly t: 'status'; readonly at: number; readonly status: string; readonly detail?: string }
  | {
      readonly t: 'refused';
      readonly at: number;
      readonly ctx: KillContext;
      readonly cause: string;
      readonly flipSeq?: number;
      readonly kind: string;
    }
  | {
      readonly t: 'cancel';
      readonly at: number;
      readonly ctx: KillContext;
      readonly kind: 'llm' | 'tool';
    }
  | {
      readonly t: 'fire';
      readonly at: number;
      readonly ctx: KillContext;
      readonly kind: 'retry' | 'timer';
    }
  | {
      readonly t: 'unscheduled';
      readonly at: number;
      readonly ctx: KillContext;
      readonly kind: 'retry' | 'timer';
    }
  | {
      readonly t: 'discard';
      readonly at: number;
      readonly ctx: KillContext;
      readonly count: number;
    }
  | {
      /** Event-loop delay since the previous collect (ms): how starved the worker was. */
      readonly t: 'loop';
      readonly at: number;
      /** Start of the window the figures cover: the previous collect, or the worker's start. */
      readonly since?: number;
      readonly p50: number;
      readonly p99: number;
      readonly max: number;
    }
  | {
      /** This worker spawned a run-tree child and sent its work to worker `to`. */
      readonly t: 'spawn';
      readonly at: number;
      /** The spawning run's own path (root first), as its scope has it. */
      readonly parentPath: readonly string[];
      readonly childId: string;
      readonly to: string;
    }
  | {
      /** A run-tree child run began executing here (it left the tree queue). */
      readonly t: 'child-start';
      readonly at: number;
      /** The context it runs under, from the lineage that came with its work. */
      readonly ctx: KillContext;
    }
  | {
      readonly t: 'late-landing';
      readonly at: number;
      readonly ctx: KillContext;
      readonly key: string;
    };

/** Counters a worker keeps. */
export interface WorkerCounters {
  effectsLanded: number;
  effectsRefused: number;
  effectsAborted: number;
  effectsFailed: number;
  effectsLandedAfterHalt: number;
  llmStarted: number;
  llmCompleted: number;
  llmCancelled: number;
  retriesScheduled: number;
  retriesCancelled: number;
  retriesFired: number;
  timersScheduled: number;
  timersCancelled: number;
  timersFired: number;
  enqueued: number;
  enqueueRefused: number;
  dequeued: number;
  discarded: number;
  childrenSpawned: number;
  spawnsRefused: number;
  childrenStarted: number;
}

/** Queue depth split by a selector. */
export interface QueueDepth {
  readonly at: number;
  readonly total: number;
  readonly matching: number;
  readonly held: number;
}

/**
 * The tool calls a worker holds open across flips (KS-9.4.3): how many are open now, of how many
 * it holds (0 of 0 for a worker whose tools honour their signal).
 */
export interface HeldCalls {
  readonly open: number;
  readonly total: number;
}

/** Orchestrator -> worker. */
export type ToWorker =
  | { readonly type: 'start'; readonly config: WorkerConfig }
  | { readonly type: 'collect'; readonly id: number }
  | { readonly type: 'queue-depth'; readonly id: number; readonly selector: Selector }
  | { readonly type: 'stop'; readonly id: number }
  | { readonly type: 'tree-shape'; readonly id: number }
  | { readonly type: 'held-calls'; readonly id: number }
  /** A run-tree child's work, relayed from the worker that spawned it, lineage as it was sent. */
  | { readonly type: 'child'; readonly lineage: unknown; readonly task: TreeTask };

/** Worker -> orchestrator. */
export type FromWorker =
  | { readonly type: 'started'; readonly workerId: string; readonly pid: number }
  | {
      readonly type: 'applied';
      readonly workerId: string;
      readonly seq: number;
      readonly at: number;
    }
  | {
      readonly type: 'status';
      readonly workerId: string;
      readonly status: string;
      readonly at: number;
    }
  | {
      readonly type: 'collected';
      readonly id: number;
      readonly events: readonly WorkerEvent[];
      readonly counters: WorkerCounters;
    }
  | { readonly type: 'queue-depth'; readonly id: number; readonly depth: QueueDepth }
  | { readonly type: 'stopped'; readonly id: number; readonly counters: WorkerCounters }
  | { readonly type: 'tree-shape'; readonly id: number; readonly shape: TreeAtFlip }
  | { readonly type: 'held-calls'; readonly id: number; readonly held: HeldCalls }
  /** Send a run-tree child's work (and the lineage this worker gives it) to worker `to`. */
  | {
      readonly type: 'dispatch';
      readonly to: string;
      readonly lineage: unknown;
      readonly task: TreeTask;
    }
  | { readonly type: 'fatal'; readonly workerId: string; readonly message: string };

/** Fresh zeroed counters. */
export function zeroCounters(): WorkerCounters {
  return {
    effectsLanded: 0,
    effectsRefused: 0,
    effectsAborted: 0,
    effectsFailed: 0,
    effectsLandedAfterHalt: 0,
    llmStarted: 0,
    llmCompleted: 0,
    llmCancelled: 0,
    retriesScheduled: 0,
    retriesCancelled: 0,
    retriesFired: 0,
    timersScheduled: 0,
    timersCancelled: 0,
    timersFired: 0,
    enqueued: 0,
    enqueueRefused: 0,
    dequeued: 0,
    discarded: 0,
    childrenSpawned: 0,
    spawnsRefused: 0,
    childrenStarted: 0,
  };
}
