import type { HostLoad } from '../measure/host-load.js';
import type { Level, Selector } from '../../model/selector.js';
import type { QueueDepth, WorkerCounters } from '../internal/protocol.js';

/** One worker's time-to-stop for one lever. */
export interface WorkerStop {
  readonly workerId: string;
  /** When the worker applied the flip (drill clock), if it did. */
  readonly appliedAt?: number;
  /** appliedAt - flip accepted, ms. Absent when the worker never applied it. */
  readonly timeToStopMs?: number;
  /** From the control plane's acknowledgement instead of the worker's own report (fleet mode). */
  readonly fromAck?: boolean;
  /** When the control plane received its acknowledgement, ms after the flip was accepted. */
  readonly ackMs?: number;
}

/** Effects that reached the sink, measured against one lever. */
export interface LeverEffects {
  /** Matching effects dispatched in the window [accepted - window, accepted): the baseline. */
  readonly matchingBefore: number;
  /** Matching effects dispatched after the flip was accepted (before workers applied it: expected, few). */
  readonly matchingAfterAccepted: number;
  /** Matching effects dispatched after their worker had applied the halt. Must be 0. */
  readonly matchingAfterApplied: number;
  /** Matching effects dispatched after the stop was complete. The target (0). */
  readonly matchingAfterComplete: number;
  /** Matching effects that arrived after complete although dispatched before (network in flight). */
  readonly matchingArrivedAfterComplete: number;
  /** Keys of effects counted in matchingAfterComplete (first 20), for the report. */
  readonly afterCompleteKeys: readonly string[];
  /** matchingAfterApplied per worker, so a violation names the workers that leaked. */
  readonly leakedByWorker: Readonly<Record<string, number>>;
  /** Non-matching effects per second before the flip and while the halt was active. */
  readonly otherRateBefore: number;
  readonly otherRateDuring: number;
  /** Non-matching effects refused because of a halt while this halt was active. Must be 0. */
  readonly otherRefused: number;
  /** otherRefused by `worker:cause[#flip seq]`, so a reader tells a stale worker from a wrong match. */
  readonly otherRefusedBy: Readonly<Record<string, number>>;
  /** Matching effects per second after the resume (the resume worked). */
  readonly matchingRateAfterResume?: number;
}

/** Retries and timers, for one lever. */
export interface LeverSchedules {
  readonly retriesCancelled: number;
  readonly timersCancelled: number;
  /** Matching retries/timers that fired after the flip was accepted (before their worker applied it). */
  readonly firedAfterAccepted: number;
  /** Matching retries/timers that fired after their worker applied the halt. Must be 0. */
  readonly firedAfterApplied: number;
}

/** A run-tree lever: the tree at the flip and what it did after. KS-9.3.6 */
export interface LeverTree {
  /** The tree's root run id (the lever's selector). */
  readonly root: string;
  /** Descendants spawned before the flip (from the spawning workers' records). */
  readonly spawnedBeforeFlip: number;
  /** The tree's child runs right before the flip: running (of which waiting on a timer or retry) and queued. */
  readonly atFlip: {
    readonly running: number;
    readonly queued: number;
    readonly waiting: number;
    /** Workers holding at least one of them. */
    readonly workers: number;
    /** When children spawn grandchildren: workers holding a grandchild (the tree's full depth). */
    readonly deepWorkers?: number;
    readonly byWorker: readonly {
      readonly workerId: string;
      readonly running: number;
      readonly queued: number;
      readonly waiting: number;
    }[];
  };
  /** Descendants spawned after the spawning worker applied the halt. Target 0. */
  readonly dispatchedAfterApplied: number;
  /** Descendants that left a queue and began after their worker applied the halt. Target 0. */
  readonly startedAfterApplied: number;
  /** The first of those, for the report. */
  readonly lateDispatches: readonly string[];
  /** Descendants that ran with a context not naming the root (lineage lost); first 20. */
  readonly lineageLost: readonly string[];
  readonly lineageLostCount: number;
}

/** The result of one lever. KS-9.3.2 */
export interface LeverResult {
  readonly label: string;
  readonly level: Level;
  readonly selector: Selector;
  readonly mode: string;
  readonly flipId: string;
  readonly seq?: number;
  /** When the control plane accepted the flip (drill clock). */
  readonly acceptedAt?: number;
  /** When the stop was complete, from the control plane's answer (drill clock). */
  readonly completeAt?: number;
  /** completeAt - acceptedAt, ms. */
  readonly stopCompleteMs?: number;
  /** What the control plane's wait said (acknowledged, laggards), as it said it. */
  readonly answer?: Readonly<Record<string, unknown>>;
  readonly stops: readonly WorkerStop[];
  readonly timeToStop: { readonly p50?: number; readonly p99?: number; readonly max?: number };
  /**
   * Flip accepted to the control plane receiving each worker's acknowledgement: what the
   * stop-complete time is made of. A gap between this and time-to-stop is the worker's ack path.
   */
  readonly timeToAck?: { readonly p50?: number; readonly p99?: number; readonly max?: number };
  readonly effects?: LeverEffects;
  readonly inFlightCancelled?: { readonly llm: number; readonly tool: number };
  readonly schedules?: LeverSchedules;
  /** A run-tree lever's tree figures (KS-9.3.6). */
  readonly tree?: LeverTree;
  /** Queue depth right after the stop completed (T+0) and after `observeMs` (T+N). */
  readonly queue?: {
    readonly t0: readonly (QueueDepth & { workerId: string })[];
    readonly tN: readonly (QueueDepth & { workerId: string })[];
    readonly discarded: number;
  };
  readonly resume?: {
    readonly seq?: number;
    readonly release?: string;
    readonly ok: boolean;
    readonly detail?: string;
  };
  /**
   * The workers' event-loop delay over the lever (worst p99 and worst max across workers, ms): a
   * worker whose loop was held up (a starved CPU) applies the flip that much later.
   */
  readonly workerLoopDelay?: {
    readonly p99: number;
    readonly max: number;
    /**
     * Start of the window (drill clock, earliest across workers): the collect after the previous
     * lever, or for the first lever the one after the warm-up, never the workers' start.
     */
    readonly since?: number;
  };
  /** Why the lever could not be measured in full (errors talking to the control plane). */
  readonly errors: readonly string[];
}

/** Ledger consistency after recovery. KS-9.3.3 */
export interface LedgerCheck {
  readonly entries: number;
  readonly sinkEffects: number;
  /** Sink effects with no ledger entry of the same key. */
  readonly missing: readonly string[];
  /** Sink effects whose ledger entry has neither a landed outcome nor an in-doubt mark. */
  readonly wrongOutcome: readonly string[];
  /** Ledger entries that claim a landing the sink never saw. */
  readonly phantom: readonly string[];
  /** Intent-only entries the sink never saw: orphans (e.g. from a discard path). */
  readonly orphans: readonly string[];
  /** Entries in doubt (intent or aborted) that the sink did see. Allowed, and listed. */
  readonly inDoubt: number;
  /**
   * Sink effects whose ledger history is `intent > aborted > cancelled`: the abort came while the
   * request was already on the wire. The `aborted` event is the in-doubt mark; the closing
   * `cancelled` overclaims (the guard cannot know the effect did not land). Listed for review.
   */
  readonly abortedButLanded: readonly string[];
  readonly landedAfterHalt: readonly string[];
  /** Ledger files that could not be read. */
  readonly unreadable: readonly string[];
}

/** A missed target. The drill exits non-zero when there is any. */
export interface Violation {
  /** Stable code: `worker-not-connected`, `effect-after-complete`, `time-to-stop`, ... */
  readonly code: string;
  readonly lever?: string;
  readonly workerId?: string;
  readonly message: string;
}

/** One worker as the drill saw it. */
export interface WorkerSummary {
  readonly workerId: string;
  readonly variant?: string;
  /** The gateway member (KS-9.7): counted like a worker, but it runs no agent runs or run trees. */
  readonly gateway?: boolean;
  /** Its source was ever fresh (open). */
  readonly everFresh?: boolean;
  /** The control plane listed it connected and fresh before every lever. */
  readonly connected: boolean;
  readonly counters?: WorkerCounters;
  /** It died during the drill (exit code or signal, or the error it reported). */
  readonly crashed?: string;
  readonly effectsAtSink: number;
}

/** The whole drill. KS-9.3.5 */
export interface DrillReport {
  readonly scenario: string;
  readonly mode: 'embedded' | 'fleet';
  readonly controlPlane: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly workers: readonly WorkerSummary[];
  readonly levers: readonly LeverResult[];
  readonly ledger?: LedgerCheck;
  readonly llm?: {
    readonly started: number;
    readonly completed: number;
    readonly cancelled: number;
  };
  readonly targets: Readonly<Record<string, unknown>>;
  /** The machine the drill ran on: time-to-stop depends on it (a loaded 2-core box is slower). */
  readonly environment?: {
    readonly node: string;
    readonly cpus: number;
    /** 1-minute load average at the start and at the end. */
    readonly loadStart: number;
    readonly loadEnd: number;
  };
  readonly violations: readonly Violation[];
  /**
   * Timing targets missed on an overloaded host ({@link DrillReport.host}): neither a pass nor a
   * violation. KS-9.3.7
   */
  readonly inconclusive?: readonly Violation[];
  /** The host's load over the drill, and whether it was overloaded. */
  readonly host?: HostLoad;
  /** `passed`: every target met; `failed`: a violation; `inconclusive`: see {@link DrillReport.inconclusive}. */
  readonly verdict?: 'passed' | 'failed' | 'inconclusive';
  readonly passed: boolean;
}
