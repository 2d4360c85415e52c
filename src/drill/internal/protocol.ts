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
      readonly p50: number;
      readonly p99: number;
      readonly max: number;
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
}

/** Queue depth split by a selector. */
export interface QueueDepth {
  readonly at: number;
  readonly total: number;
  readonly matching: number;
  readonly held: number;
}

/** Orchestrator -> worker. */
export type ToWorker =
  | { readonly type: 'start'; readonly config: WorkerConfig }
  | { readonly type: 'collect'; readonly id: number }
  | { readonly type: 'queue-depth'; readonly id: number; readonly selector: Selector }
  | { readonly type: 'stop'; readonly id: number };

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
  };
}
