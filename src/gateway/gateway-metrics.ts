import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Which boundary a call crossed. */
export const Seam = { LLM: 'llm', MCP: 'mcp' } as const;
export type Seam = (typeof Seam)[keyof typeof Seam];

/** Upstream latencies: loopback answers in ms, a model in seconds. */
const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/**
 * The gateway's Prometheus metrics, in a registry of its own (KS-15.5.2):
 * - `killswitch_gateway_calls_total{seam, target, outcome}`: every call, by how it ended
 *   (`landed`, `failed`, `refused`, `aborted`, `rejected` for a malformed request);
 * - `killswitch_gateway_refusals_total{seam, target, cause}` and
 *   `killswitch_gateway_aborts_total{seam, target, cause}` (`halted`, `stale`, `error`);
 * - `killswitch_gateway_upstream_latency_seconds{seam, target}`: from dispatch to the upstream's
 *   answer head (first byte of a stream);
 * - `killswitch_gateway_in_flight{seam}` and `killswitch_gateway_source_fresh` (1 when the
 *   gateway's kill state is fresh).
 *
 * `target` is the LLM endpoint (`chat.completions`) or the MCP upstream's configured name: both
 * bounded sets.
 */
export class GatewayMetrics {
  readonly registry: Registry;
  readonly calls: Counter<'seam' | 'target' | 'outcome'>;
  readonly refusals: Counter<'seam' | 'target' | 'cause'>;
  readonly aborts: Counter<'seam' | 'target' | 'cause'>;
  readonly latency: Histogram<'seam' | 'target'>;
  readonly inFlight: Gauge<'seam'>;
  readonly fresh: Gauge;
  /** MCP sessions open over Streamable HTTP. */
  readonly mcpSessions: Gauge;
  /** MCP requests refused before any session: `unauthorized` or `session-cap`. */
  readonly mcpRejected: Counter<'reason'>;
  #isFresh: () => boolean = () => false;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.calls = new Counter({
      name: 'killswitch_gateway_calls_total',
      help: 'Calls through the gateway, by seam, target and outcome.',
      labelNames: ['seam', 'target', 'outcome'],
      registers,
    });
    this.refusals = new Counter({
      name: 'killswitch_gateway_refusals_total',
      help: 'Calls refused before they left (nothing sent upstream), by cause.',
      labelNames: ['seam', 'target', 'cause'],
      registers,
    });
    this.aborts = new Counter({
      name: 'killswitch_gateway_aborts_total',
      help: 'Calls cut while in flight (upstream request aborted or cancelled), by cause.',
      labelNames: ['seam', 'target', 'cause'],
      registers,
    });
    this.latency = new Histogram({
      name: 'killswitch_gateway_upstream_latency_seconds',
      help: 'Time from dispatch to the upstream answer head (first byte of a stream).',
      labelNames: ['seam', 'target'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inFlight = new Gauge({
      name: 'killswitch_gateway_in_flight',
      help: 'Calls dispatched upstream and not yet settled.',
      labelNames: ['seam'],
      registers,
    });
    this.mcpSessions = new Gauge({
      name: 'killswitch_gateway_mcp_sessions',
      help: 'MCP sessions open over Streamable HTTP.',
      registers,
    });
    this.mcpRejected = new Counter({
      name: 'killswitch_gateway_mcp_rejected_total',
      help: 'MCP requests refused: unauthorized (no or a wrong bearer token) or session-cap (mcp.maxSessions reached).',
      labelNames: ['reason'],
      registers,
    });
    const read = (): boolean => this.#isFresh();
    this.fresh = new Gauge({
      name: 'killswitch_gateway_source_fresh',
      help: '1 when the gateway follows a fresh kill state, 0 when it fails closed.',
      registers,
      // Read on every scrape, so the gauge never shows a freshness the gateway no longer has.
      collect() {
        this.set(read() ? 1 : 0);
      },
    });
  }

  /** Tells the freshness gauge where to read the gateway's state on each scrape. */
  freshness(isFresh: () => boolean): void {
    this.#isFresh = isFresh;
  }
}
