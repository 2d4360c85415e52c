import type { DrillReport } from '../report/drill-report.js';
import type { WorkerVariant } from '../internal/protocol.js';
import { type WrittenReport } from '../report/report-writer.js';
import { type Scenario } from '../scenario.js';
import type { HostLoadMonitor } from '../measure/host-load.js';

/** The drill scope against a fleet the drill did not start (DESIGN section 8). */
export interface DrillScope {
  /** A drill tenant: the tenant lever halts it; the capability lever narrows to it. */
  readonly tenant?: string;
  /** A canary capability for the capability lever. */
  readonly capability?: string;
  /** A drill run for the run lever. */
  readonly runId?: string;
  /** A drill feature for the feature lever. */
  readonly feature?: string;
}

/** Options of {@link runDrill}. */
export interface RunDrillOptions {
  readonly scenario: Scenario;
  /** Where the report goes; nothing is written when absent. */
  readonly outDir?: string;
  /** Progress lines. @default silent */
  readonly log?: (line: string) => void;
  /**
   * A control plane to use instead of starting one. With `expectWorkers` the drill runs in fleet
   * mode: it starts no workers and pulls levers on `scope` only.
   */
  readonly url?: string;
  readonly token?: string;
  /**
   * With `url`: the given control plane's public key(s), PEM, when it signs (`serve
   * --signing-key`); the drill's workers then check its signatures (KS-17.7.9, KS-17.7.10). The
   * embedded control plane always signs with a fresh key its workers are given.
   */
  readonly publicKeys?: string;
  /** Fleet mode: the workers that must be connected and fresh (a count or a list of ids). */
  readonly expectWorkers?: number | readonly string[];
  /** Fleet mode: the drill scope. */
  readonly scope?: DrillScope;
  /** Fleet mode: also pull the global lever (stops the whole fleet). @default false */
  readonly allowGlobal?: boolean;
  /** Fleet mode: a drill sink to read effects from (`GET /effects`). */
  readonly sinkUrl?: string;
  /** Fleet mode: ledger files (JSON lines) to check after the drill. */
  readonly ledgerPaths?: readonly string[];
  /** Test-only: plant a negative-control variant in some workers (workerId -> variant). */
  readonly variants?: Readonly<Record<string, WorkerVariant>>;
  /** Worker entry script. @default `worker.js` next to this module */
  readonly workerScript?: string;
  /** The gateway member's entry script (KS-9.7). @default `gateway-worker.js` next to the worker script */
  readonly gatewayScript?: string;
  /** Embedded control plane entry script. @default `control-plane-process.js` next to this module */
  readonly controlPlaneScript?: string;
  /** Workers' lease and heartbeat, ms. @default 3000 and 1000 */
  readonly staleAfterMs?: number;
  readonly heartbeatMs?: number;
  /** Keep the temporary data directory (flip log, ledgers). @default false */
  readonly keepData?: boolean;
  /**
   * Interrupts an embedded drill: its workers, control plane, sink and LLM are stopped, its data
   * removed, and the drill rejects with `DrillInterruptedError`.
   */
  readonly signal?: AbortSignal;
  /** The host's load while the drill runs. @default started by {@link runDrill} */
  readonly hostLoad?: HostLoadMonitor;
}

/** What {@link runDrill} returns. */
export interface DrillOutcome {
  readonly report: DrillReport;
  readonly written?: WrittenReport;
  /**
   * 0 pass, 1 a target was missed, 4 inconclusive: only timing targets were missed, on an
   * overloaded host (KS-9.3.7).
   */
  readonly exitCode: 0 | 1 | 4;
}
