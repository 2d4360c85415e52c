import { ProviderEvents } from '@openfeature/server-sdk';
import { Gateway } from '../../gateway/gateway.js';
import { MCP_HALTED_ERROR_CODE } from '../../gateway/gateway-refusal.js';
import { systemClock } from '../../internal/clock.js';
import type { KillContext } from '../../model/selector.js';
import {
  zeroCounters,
  type WorkerConfig,
  type WorkerCounters,
  type WorkerEvent,
} from '../internal/protocol.js';
import { runIdOf } from '../scenario.js';
import { startSinkMcpUpstream, type SinkMcpUpstream } from '../servers/sink-mcp-upstream.js';
import type { DrillWorkerSink } from './drill-worker.js';
import { StopStamps } from './stop-stamps.js';

/** The name of the MCP upstream behind the drill's gateway (tools are `tools__<capability>`). */
const UPSTREAM = 'tools';

/** What a call through the gateway came to. */
type Outcome = 'ok' | 'refused' | 'cut' | 'failed';

/** The kill-switch refusal a gateway answer carries, as the agent reads it. */
interface Refusal {
  readonly code?: string;
  readonly cause?: string;
  readonly flip?: { readonly seq?: number };
}

/**
 * The gateway path of the drill (KS-9.7): one fleet member that runs a kill-switch
 * {@link Gateway} in front of the drill's slow LLM and an MCP upstream whose tools land effects in
 * the sink, and an agent that knows nothing of the kill switch (as a Python agent would): each of
 * its runs streams a chat completion and calls a tool through the gateway, its lineage in headers
 * and `_meta`, and on any error waits and goes on. The gateway follows the control plane and
 * acknowledges under this member's worker id, so a flip's stop-complete counts it; the time it
 * applied each flip is reported like a worker's, and the effects its calls land are measured at
 * the sink like every worker's, against its ledger.
 */
export class GatewayMember {
  readonly config: WorkerConfig;
  readonly counters: WorkerCounters = zeroCounters();
  readonly #report: DrillWorkerSink;
  readonly #events: WorkerEvent[] = [];
  #collected = 0;
  #gw: Gateway | undefined;
  #upstream: SinkMcpUpstream | undefined;
  #stopping = false;
  readonly #loops: Promise<void>[] = [];
  readonly #wakers = new Set<() => void>();
  #status = '';
  #session: string | undefined;
  #rpcId = 0;

  constructor(config: WorkerConfig, report: DrillWorkerSink) {
    this.config = config;
    this.#report = report;
  }

  /** Starts the upstream, the gateway (waits until it holds a fresh state) and the agent's runs. */
  async start(): Promise<void> {
    const c = this.config;
    const t = c.traffic;
    this.#upstream = await startSinkMcpUpstream({
      sinkUrl: c.sinkUrl,
      tools: t.capabilities,
      toolLatencyMs: t.toolLatencyMs,
      workerId: c.workerId,
    });
    const gw = await Gateway.start({
      config: {
        workerId: c.workerId,
        release: c.release,
        controlPlane: {
          urls: [...c.urls],
          ...(c.token !== undefined ? { token: c.token } : {}),
          ...(c.publicKeys !== undefined ? { publicKeys: [c.publicKeys] } : {}),
          staleAfterMs: c.staleAfterMs,
          heartbeatMs: c.heartbeatMs,
        },
        listen: { port: 0 },
        ledger: { kind: 'file', path: c.ledgerPath },
        llm: { openai: c.llmUrl },
        // The tool's name is the capability, as the workers' tools are (a capability lever matches).
        mcp: { upstreams: { [UPSTREAM]: { url: this.#upstream.url } }, capability: '{tool}' },
      },
      logger: { info: () => undefined, warn: () => undefined },
    });
    this.#gw = gw;
    // The gateway has stopped for a flip once it applied it and no call the flip cut is still
    // unenforced (KS-6.5: its MCP cancel not yet taken upstream): that is the time reported, the
    // one its acknowledgement vouches for. Before it, an upstream may still land the call's effect.
    // The guard cuts the calls a flip matches in the microtasks after it is applied (each watch is
    // re-evaluated), and their holds are taken then: read them in the check phase. The
    // gateway's acknowledgement is sent from the check phase too and may leave before this look,
    // so each event is stamped as it happens (StopStamps) and the stop is dated at the one that
    // completed it, never after what vouches for it.
    let reported = 0;
    const stamps = new StopStamps();
    const check = (): void => {
      const held = gw.unenforced.reduce((m, u) => Math.min(m, u.seq), Number.POSITIVE_INFINITY);
      const upTo = Math.min(gw.appliedSeq, held - 1);
      if (upTo > reported) {
        reported = upTo;
        const at = stamps.take(upTo, systemClock.now());
        this.#events.push({ t: 'applied', at, seq: upTo });
        this.#report.applied(upTo, at);
      }
      this.#noteStatus();
    };
    gw.provider.events.addHandler(ProviderEvents.ConfigurationChanged, () => {
      stamps.applied(gw.appliedSeq, systemClock.now());
      setImmediate(check);
    });
    gw.onEnforced((seq) => {
      stamps.enforced(seq, systemClock.now());
      setImmediate(check);
    });
    for (const e of [ProviderEvents.Ready, ProviderEvents.Stale, ProviderEvents.Error])
      gw.provider.events.addHandler(e, () => this.#noteStatus());
    await gw.waitFresh(20_000);
    this.#noteStatus();
    await this.#initialize();
    for (let j = 0; j < t.runsPerWorker; j++) this.#loops.push(this.#runLoop(j));
  }

  #noteStatus(): void {
    const status = this.#gw?.status ?? 'closed';
    if (status === this.#status) return;
    this.#status = status;
    const at = systemClock.now();
    this.#events.push({ t: 'status', at, status });
    this.#report.status(status, at);
  }

  /** Events since the last call. */
  collect(): WorkerEvent[] {
    const out = this.#events.slice(this.#collected);
    this.#collected = this.#events.length;
    return out;
  }

  /** Adds an event from outside (the entry point's event-loop figures). */
  note(event: WorkerEvent): void {
    this.#events.push(event);
  }

  /** Stops the agent's runs, then the gateway (cutting what is still in flight) and the upstream. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const w of this.#wakers) w();
    await Promise.allSettled(this.#loops);
    await this.#gw?.close();
    await this.#upstream?.close();
  }

  async #runLoop(j: number): Promise<void> {
    const c = this.config;
    const t = c.traffic;
    const i = (Number(/(\d+)$/.exec(c.workerId)?.[1] ?? '0') + 1) * t.runsPerWorker + j;
    const ctx = {
      runId: runIdOf(c.workerId, j),
      tenant: t.tenants[i % t.tenants.length]!,
      feature: t.features[Math.floor(i / t.tenants.length + i) % t.features.length]!,
    };
    let n = 0;
    while (!this.#stopping) {
      const llm = await this.#llm(ctx);
      if (llm !== 'ok') {
        await this.#sleep(t.parkMs);
        continue;
      }
      const capability = t.capabilities[(n + j) % t.capabilities.length]!;
      n++;
      const tool = await this.#tool(ctx, capability);
      if (tool !== 'ok') await this.#sleep(t.parkMs);
      await this.#sleep(t.stepPauseMs);
    }
  }

  /** A streamed chat completion through the gateway (the OpenAI wire format, as an SDK sends it). */
  async #llm(ctx: KillContext & { runId: string }): Promise<Outcome> {
    const gw = this.#gw!;
    this.counters.llmStarted++;
    try {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: 'Bearer drill-key',
          'x-killswitch-tenant': ctx.tenant!,
          'x-killswitch-feature': ctx.feature!,
          'x-killswitch-run-path': ctx.runId,
        },
        body: JSON.stringify({
          model: 'slow-1',
          messages: [{ role: 'user', content: 'next step' }],
          max_tokens: this.config.traffic.llm.tokens,
          stream: true,
        }),
      });
      const text = await res.text();
      if (res.status !== 200) {
        const r = (JSON.parse(text) as { error?: { killswitch?: Refusal } }).error?.killswitch;
        if (r !== undefined) return this.#refused(ctx, r, 'gateway-llm');
        return 'failed';
      }
      if (text.includes('event: error')) {
        // KS-15.2.4 cut mid-stream with an error event.
        this.counters.llmCancelled++;
        this.#events.push({ t: 'cancel', at: systemClock.now(), ctx, kind: 'llm' });
        return 'cut';
      }
      this.counters.llmCompleted++;
      return 'ok';
    } catch {
      return 'failed';
    }
  }

  /** A `tools/call` through the gateway's MCP endpoint, in raw JSON-RPC. */
  async #tool(ctx: KillContext & { runId: string }, capability: string): Promise<Outcome> {
    let answer: { result?: unknown; error?: { code?: number; data?: Refusal } };
    try {
      answer = (await this.#rpc('tools/call', {
        name: `${UPSTREAM}__${capability}`,
        arguments: {},
        _meta: {
          'dev.killswitch/lineage': {
            tenant: ctx.tenant,
            feature: ctx.feature,
            runPath: [ctx.runId],
          },
        },
      })) as typeof answer;
    } catch {
      this.counters.effectsFailed++;
      return 'failed';
    }
    const full = { ...ctx, capability };
    if (answer.error === undefined) {
      this.counters.effectsLanded++;
      return 'ok';
    }
    if (answer.error.code === MCP_HALTED_ERROR_CODE && answer.error.data !== undefined) {
      if (answer.error.data.code === 'KS_ABORTED') {
        this.counters.effectsAborted++;
        this.#events.push({ t: 'cancel', at: systemClock.now(), ctx: full, kind: 'tool' });
        return 'cut';
      }
      this.counters.effectsRefused++;
      return this.#refused(full, answer.error.data, 'gateway-tool');
    }
    this.counters.effectsFailed++;
    return 'failed';
  }

  #refused(ctx: KillContext, r: Refusal, kind: string): Outcome {
    this.#events.push({
      t: 'refused',
      at: systemClock.now(),
      ctx,
      cause: r.cause ?? 'halted',
      ...(r.flip?.seq !== undefined ? { flipSeq: r.flip.seq } : {}),
      kind,
    });
    return 'refused';
  }

  async #initialize(): Promise<void> {
    await this.#rpc('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'drill-agent', version: '1.0.0' },
    });
    await this.#post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  async #rpc(method: string, params: Record<string, unknown>): Promise<unknown> {
    const res = await this.#post({ jsonrpc: '2.0', id: ++this.#rpcId, method, params });
    const sid = res.headers.get('mcp-session-id');
    if (sid !== null) this.#session = sid;
    const body = (await res.json()) as { error?: unknown };
    if (method === 'initialize' && body.error !== undefined)
      throw new Error(`the gateway refused initialize: ${JSON.stringify(body.error)}`);
    return body;
  }

  #post(msg: unknown): Promise<Response> {
    return fetch(`${this.#gw!.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-06-18',
        ...(this.#session !== undefined ? { 'mcp-session-id': this.#session } : {}),
      },
      body: JSON.stringify(msg),
    });
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(h);
        this.#wakers.delete(done);
        resolve();
      };
      const h = setTimeout(done, ms);
      this.#wakers.add(done);
    });
  }
}
