import { OpenFeature, ProviderEvents, type Client } from '@openfeature/server-sdk';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import { EffectGuard } from '../../guard/effect-guard.js';
import { evaluateKill, type KillDecision } from '../../guard/kill-decision.js';
import { FileSideEffectLedger } from '../../ledger/file-side-effect-ledger.js';
import { EffectStatus, effectKey, type SideEffectLedger } from '../../ledger/side-effect-ledger.js';
import type { KillContext, Selector } from '../../model/selector.js';
import { KillSwitchProvider } from '../../provider/kill-switch-provider.js';
import { FileQueueJournal } from '../../queue/file-queue-journal.js';
import type { QueueJournal, QueueJournalRecord } from '../../queue/queue-journal.js';
import { MemoryTaskQueue } from '../../queue/memory-task-queue.js';
import { QueueController } from '../../queue/queue-controller.js';
import type { TaskConsumer } from '../../queue/task-queue.js';
import { Scheduler } from '../../schedule/scheduler.js';
import type { FlipSource } from '../../source/flip-source.js';
import { RemoteFlipSource } from '../../../providers/remote/index.js';
import { drillNow } from '../drill-clock.js';
import { ObservedFlipSource } from './observed-source.js';
import {
  WorkerVariant,
  zeroCounters,
  type QueueDepth,
  type WorkerConfig,
  type WorkerCounters,
  type WorkerEvent,
} from '../internal/protocol.js';
import { runIdOf } from '../scenario.js';

/** What a drill worker reports as it runs (the IPC side, or a test). */
export interface DrillWorkerSink {
  applied(seq: number, at: number): void;
  status(status: string, at: number): void;
}

type EffectCtx = KillContext & { readonly runId: string; readonly capability: string };

/** How long a tool that ignores its abort signal works before it emits (long enough to be caught mid-flight). */
const IGNORE_ABORT_LATENCY_MS = 400;

/**
 * One drill worker: production-shaped synthetic agent traffic under the kill switch. Runs across
 * tenants and features call a slow LLM (cancelled in flight by a halt), emit tool effects to the
 * sink through the {@link EffectGuard} (every effect evaluates `kill-switch`; nothing is cached),
 * retry failed effects with back-off and set follow-up timers through the {@link Scheduler}, and
 * enqueue tasks that a consumer runs. The kill state comes from a control plane through
 * `KillSwitchProvider({ source: RemoteFlipSource })`. Negative-control variants plant one bug
 * each (see {@link WorkerVariant}). KS-9.2.3
 */
export class DrillWorker {
  readonly config: WorkerConfig;
  readonly counters: WorkerCounters = zeroCounters();
  readonly #events: WorkerEvent[] = [];
  #collected = 0;
  readonly #report: DrillWorkerSink;
  #ledger!: SideEffectLedger;
  #provider!: KillSwitchProvider;
  #client!: Client;
  #guard!: EffectGuard;
  #scheduler!: Scheduler;
  #queue!: QueueController<TaskPayload>;
  #consumer: TaskConsumer | undefined;
  #stopping = false;
  readonly #stopWaiters = new Set<() => void>();
  readonly #loops: Promise<void>[] = [];
  readonly #timerDone = new Set<Promise<unknown>>();
  /**
   * Guarded effects not yet settled. A halt or close frees the scheduler's caller at once while
   * the guard may still be writing the effect's records; stop() waits for these before closing
   * the ledger, so shutdown never leaves an intent without its outcome.
   */
  readonly #effects = new Set<Promise<void>>();
  /** boot-cache variant: the decisions read once at boot. */
  readonly #bootCache = new Map<string, boolean>();
  #everOpen = false;

  constructor(config: WorkerConfig, report: DrillWorkerSink) {
    this.config = config;
    this.#report = report;
  }

  /** Opens the ledger, binds the provider and starts the traffic. */
  async start(): Promise<void> {
    const c = this.config;
    const ledger = new FileSideEffectLedger({ path: c.ledgerPath, logger: quietLogger });
    await ledger.open();
    this.#ledger = ledger;
    // KS-9.4.2 unreachable: the flag source points at a port nobody listens on, from the start.
    const urls = c.variant === WorkerVariant.UNREACHABLE ? ['http://127.0.0.1:1'] : [...c.urls];
    const remote: FlipSource = new RemoteFlipSource({
      urls,
      workerId: c.workerId,
      release: c.release,
      staleAfterMs: c.staleAfterMs,
      heartbeatMs: c.heartbeatMs,
      ...(c.token !== undefined ? { token: c.token } : {}),
      logger: quietLogger,
    });
    const source = new ObservedFlipSource(
      remote,
      (seq) => {
        const at = drillNow();
        this.#events.push({ t: 'applied', at, seq });
        this.#report.applied(seq, at);
      },
      (status, detail) => {
        const at = drillNow();
        if (status === 'open') this.#everOpen = true;
        this.#events.push({ t: 'status', at, status, ...(detail !== undefined ? { detail } : {}) });
        this.#report.status(status, at);
      },
    );
    this.#provider = new KillSwitchProvider({ source, logger: quietLogger });
    const domain = `drill-${c.workerId}`;
    await OpenFeature.setProviderAndWait(domain, this.#provider);
    this.#client = OpenFeature.getClient(domain);
    this.#guard = new EffectGuard({ client: this.#client, ledger, logger: quietLogger });
    this.#scheduler = new Scheduler({
      watcher: this.#guard.watcher,
      ledger,
      random: prng(c.seed + 17),
      logger: quietLogger,
    });
    // The production queue controller over an in-memory queue; the journal is wrapped so the
    // drill sees each discard (and so the orphan-discard control can plant its bug there).
    const journal = new ObservedJournal(
      new FileQueueJournal({ path: c.ledgerPath.replace(/\.jsonl$/, '') + '.queue-journal.jsonl' }),
      async (records) => {
        const discards = records.filter((r) => r.type === 'discarded');
        this.counters.discarded += discards.length;
        for (const r of discards) {
          this.#events.push({ t: 'discard', at: drillNow(), ctx: r.context, count: 1 });
        }
        if (c.variant === WorkerVariant.ORPHAN_DISCARD) {
          // KS-9.4.4 planted bug: the discard path writes an intent for each task it throws away
          // and never closes it, leaving orphan rows that claim an effect was on its way.
          for (const r of discards) {
            const p = r.payload as TaskPayload;
            await this.#ledger
              .append({
                key: effectKey(p.runId, p.step),
                status: EffectStatus.INTENT,
                at: new Date().toISOString(),
                runId: p.runId,
                step: p.step,
                capability: p.capability,
                context: r.context,
                ...(r.haltSeq !== undefined ? { flipSeq: r.haltSeq } : {}),
              })
              .catch(() => undefined);
          }
        }
      },
    );
    this.#queue = new QueueController<TaskPayload>({
      queue: new MemoryTaskQueue({ name: `drill-${c.workerId}` }),
      watcher: this.#guard.watcher,
      journal,
      logger: quietLogger,
    });
    await this.#queue.start();
    // A resume does not release held tasks or unpause the queue by itself (an operator decides
    // when): a production worker does it on each change of the kill state, and so does this one.
    this.#client.addHandler(ProviderEvents.ConfigurationChanged, this.#onChange);
    if (c.variant === WorkerVariant.BOOT_CACHE) await this.#readOnceAtBoot();
    const t = c.traffic;
    for (let j = 0; j < t.runsPerWorker; j++) this.#loops.push(this.#runLoop(j));
    if (c.variant !== WorkerVariant.BOOT_CACHE) {
      this.#consumer = await this.#queue.work(async (task) => {
        this.counters.dequeued++;
        const p = task.payload;
        await this.#effectWithRetries(
          { ...task.context, runId: p.runId, capability: p.capability },
          p.step,
          'queue',
          false,
        );
        // The consumer is slower than the producers, so a backlog builds for a halt to act on.
        await this.#sleep(t.queue.consumeEveryMs);
      });
    }
  }

  readonly #onChange = (): void => {
    if (this.#stopping) return;
    void this.#queue.resume().then(
      (r) => {
        if (r.released > 0 || r.unpaused) {
          this.#events.push({
            t: 'status',
            at: drillNow(),
            status: 'queue-resumed',
            detail: `released ${r.released}${r.unpaused ? ', unpaused' : ''}`,
          });
        }
      },
      () => undefined,
    );
  };

  /** Whether the flag source was ever fresh. */
  get everOpen(): boolean {
    return this.#everOpen;
  }

  /** Adds an event from outside the traffic (the entry point's event-loop figures). */
  note(event: WorkerEvent): void {
    this.#events.push(event);
  }

  /** Events since the last call (the orchestrator collects after each lever). */
  collect(): WorkerEvent[] {
    const out = this.#events.slice(this.#collected);
    this.#collected = this.#events.length;
    return out;
  }

  /** Queue depth now: every task, and the ones a selector matches. */
  async queueDepth(selector: Selector): Promise<QueueDepth> {
    const at = drillNow();
    const [all, matching] = await Promise.all([this.#queue.depth(), this.#queue.depth(selector)]);
    return { at, total: all.total, matching: matching.total, held: matching.held };
  }

  /** Stops the traffic, lets in-flight work settle, closes everything. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const w of this.#stopWaiters) w();
    this.#client.removeHandler(ProviderEvents.ConfigurationChanged, this.#onChange);
    await Promise.allSettled(this.#loops);
    await this.#consumer?.close();
    await this.#queue.close();
    await this.#queue.queue.close();
    await this.#queue.journal.close();
    await this.#scheduler.close();
    await Promise.allSettled([...this.#timerDone]);
    while (this.#effects.size > 0) await Promise.allSettled([...this.#effects]);
    await this.#guard.close();
    await this.#ledger.close();
    await OpenFeature.clearProviders().catch(() => undefined);
  }

  // ---- traffic ----------------------------------------------------------------------------

  #runContext(j: number): { runId: string; tenant: string; feature: string } {
    const t = this.config.traffic;
    const w = Number(/^w(\d+)$/.exec(this.config.workerId)?.[1] ?? '0');
    const i = w * t.runsPerWorker + j;
    return {
      runId: runIdOf(this.config.workerId, j),
      tenant: t.tenants[i % t.tenants.length]!,
      // A different stride, so tenants and features cross.
      feature: t.features[Math.floor(i / t.tenants.length + i) % t.features.length]!,
    };
  }

  async #runLoop(j: number): Promise<void> {
    const t = this.config.traffic;
    const base = this.#runContext(j);
    const random = prng(this.config.seed * 7919 + j * 104729 + hash(this.config.workerId));
    let n = 0;
    while (!this.#stopping) {
      const capability = t.capabilities[(n + j) % t.capabilities.length]!;
      const ctx: EffectCtx = { ...base, capability };
      const step = `s${n}`;
      // 1. the LLM call (a run-level context: a capability halt does not stop thinking).
      const llm = await this.#llmCall(base);
      if (llm === 'halted') {
        await this.#park();
        continue;
      }
      // 2. the tool effect, with retries through the scheduler.
      const fail = random() < t.failureRate;
      const outcome = await this.#effectWithRetries(ctx, step, 'run', fail);
      // A refused or aborted step is abandoned and the run moves on, as an agent whose tool is
      // frozen carries on with its other tools: a capability halt must not stall the rest.
      n++;
      if (outcome === 'landed') {
        if (n % t.timers.everySteps === 0) this.#setTimer(ctx, `${step}-timer`);
        if (n % t.queue.enqueueEverySteps === 0) await this.#enqueue(ctx, `${step}-task`);
      } else {
        await this.#park();
      }
      await this.#sleep(t.stepPauseMs);
    }
  }

  async #llmCall(ctx: KillContext): Promise<'ok' | 'halted'> {
    const c = this.config;
    if (c.variant === WorkerVariant.BOOT_CACHE) {
      if (this.#cached(ctx)) return 'halted';
    } else {
      const d = await evaluateKill(this.#client, ctx);
      if (d.halted) {
        this.#refused(ctx, d, 'llm');
        return 'halted';
      }
    }
    const controller = new AbortController();
    let cancelled = false;
    const unwatch =
      c.variant === WorkerVariant.BOOT_CACHE
        ? () => undefined
        : this.#guard.watcher.watch(ctx, () => {
            cancelled = true;
            controller.abort();
          });
    this.counters.llmStarted++;
    try {
      const res = await fetch(
        `${c.llmUrl}/v1/generate?tokens=${c.traffic.llm.tokens}&interval=${c.traffic.llm.tokenIntervalMs}`,
        { method: 'POST', body: '{}', signal: controller.signal },
      );
      await res.text();
      this.counters.llmCompleted++;
      return 'ok';
    } catch {
      if (cancelled) {
        this.counters.llmCancelled++;
        this.#events.push({ t: 'cancel', at: drillNow(), ctx, kind: 'llm' });
      }
      return 'halted';
    } finally {
      unwatch();
    }
  }

  async #effectWithRetries(
    ctx: EffectCtx,
    step: string,
    kind: string,
    fail: boolean,
  ): Promise<'landed' | 'refused' | 'aborted' | 'failed'> {
    if (this.config.variant === WorkerVariant.BOOT_CACHE)
      return this.#cachedEffect(ctx, step, kind);
    const t = this.config.traffic;
    let attempting = false;
    try {
      await this.#scheduler.retry(
        ctx,
        async (_signal, attempt) => {
          attempting = true;
          if (attempt > 1) {
            this.counters.retriesFired++;
            this.#events.push({ t: 'fire', at: drillNow(), ctx, kind: 'retry' });
          }
          try {
            return await this.#guarded(ctx, step, kind, attempt, fail && attempt === 1);
          } catch (err) {
            const halt =
              err instanceof KillSwitchError &&
              (err.code === ErrorCode.HALTED || err.code === ErrorCode.ABORTED);
            if (!halt && attempt < t.retry.maxAttempts) this.counters.retriesScheduled++;
            throw err;
          } finally {
            attempting = false;
          }
        },
        {
          maxAttempts: t.retry.maxAttempts,
          backoff: { baseMs: t.retry.baseMs, factor: 2, jitter: 0.5 },
        },
        { step: `${step}-retry` },
      );
      this.counters.effectsLanded++;
      return 'landed';
    } catch (err) {
      if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
        this.counters.effectsRefused++;
        this.#events.push({
          t: 'refused',
          at: drillNow(),
          ctx,
          cause: causeOf(err),
          kind,
          ...flipSeqOf(err),
        });
        return 'refused';
      }
      if (err instanceof KillSwitchError && err.code === ErrorCode.ABORTED) {
        if (attempting) {
          this.counters.effectsAborted++;
          this.#events.push({ t: 'cancel', at: drillNow(), ctx, kind: 'tool' });
        } else {
          // Halted during the back-off sleep: the retry was unscheduled.
          this.counters.retriesCancelled++;
          this.#events.push({ t: 'unscheduled', at: drillNow(), ctx, kind: 'retry' });
        }
        return 'aborted';
      }
      this.counters.effectsFailed++;
      return 'failed';
    }
  }

  /** One attempt of a tool effect through the guard (tracked, so stop() waits for it). */
  #guarded(
    ctx: EffectCtx,
    step: string,
    kind: string,
    attempt: number,
    fail: boolean,
  ): Promise<void> {
    const p = this.#guardRun(ctx, step, kind, attempt, fail);
    this.#effects.add(p);
    const forget = () => this.#effects.delete(p);
    p.then(forget, forget);
    return p;
  }

  #guardRun(
    ctx: EffectCtx,
    step: string,
    kind: string,
    attempt: number,
    fail: boolean,
  ): Promise<void> {
    return this.#guard.run(
      { context: ctx, runId: ctx.runId, step, capability: ctx.capability, idempotent: true },
      (signal, info) => this.#tool(signal, info.key, ctx, kind, attempt, fail),
    );
  }

  /**
   * The tool: some work (an abortable wait), then the effect (a POST to the sink). A well-behaved
   * tool checks its signal before emitting and passes it to fetch; the ignore-abort variant does
   * neither, so its effect lands after the halt.
   */
  async #tool(
    signal: AbortSignal | undefined,
    key: string,
    ctx: EffectCtx,
    kind: string,
    attempt: number,
    fail: boolean,
  ): Promise<void> {
    const c = this.config;
    const ignore = c.variant === WorkerVariant.IGNORE_ABORT;
    const use = ignore ? undefined : signal;
    await delay(
      ignore ? Math.max(c.traffic.toolLatencyMs, IGNORE_ABORT_LATENCY_MS) : c.traffic.toolLatencyMs,
      use,
    );
    use?.throwIfAborted();
    const sentAt = drillNow();
    const res = await fetch(`${c.sinkUrl}/effects`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-drill-sent-at': sentAt.toFixed(3),
        ...(fail ? { 'x-drill-fail': '1' } : {}),
      },
      body: JSON.stringify({
        key,
        context: ctx,
        capability: ctx.capability,
        workerId: c.workerId,
        kind,
        attempt,
      }),
      ...(use ? { signal: use } : {}),
    });
    await res.text();
    if (ignore && signal?.aborted) {
      this.counters.effectsLandedAfterHalt++;
      this.#events.push({ t: 'late-landing', at: drillNow(), ctx, key });
    }
    if (!res.ok) throw new Error(`sink answered ${res.status}`);
  }

  #setTimer(ctx: EffectCtx, step: string): void {
    const t = this.config.traffic;
    this.counters.timersScheduled++;
    if (this.config.variant === WorkerVariant.BOOT_CACHE) {
      // The cached worker sets a plain timer: nothing cancels it.
      const p = new Promise<void>((resolve) => {
        const h = setTimeout(() => {
          this.#stopWaiters.delete(cancel);
          this.counters.timersFired++;
          this.#events.push({ t: 'fire', at: drillNow(), ctx, kind: 'timer' });
          void this.#cachedEffect(ctx, step, 'timer').finally(resolve);
        }, t.timers.delayMs);
        const cancel = () => {
          clearTimeout(h);
          resolve();
        };
        this.#stopWaiters.add(cancel);
      });
      this.#trackTimer(p);
      return;
    }
    let timer: ReturnType<Scheduler['schedule']>;
    try {
      timer = this.#scheduler.schedule(
        ctx,
        t.timers.delayMs,
        async () => {
          this.counters.timersFired++;
          this.#events.push({ t: 'fire', at: drillNow(), ctx, kind: 'timer' });
          await this.#guarded(ctx, step, 'timer', 1, false);
        },
        { step },
      );
    } catch {
      return; // the scheduler is closed: the worker is stopping
    }
    this.#trackTimer(
      timer.done.catch((err: unknown) => {
        if (
          timer.state === 'cancelled' &&
          err instanceof KillSwitchError &&
          err.code === ErrorCode.ABORTED
        ) {
          this.counters.timersCancelled++;
          this.#events.push({ t: 'unscheduled', at: drillNow(), ctx, kind: 'timer' });
        } else if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
          this.#events.push({
            t: 'refused',
            at: drillNow(),
            ctx,
            cause: causeOf(err),
            kind: 'timer',
            ...flipSeqOf(err),
          });
        }
      }),
    );
  }

  #trackTimer(p: Promise<unknown>): void {
    this.#timerDone.add(p);
    void p.finally(() => this.#timerDone.delete(p));
  }

  async #enqueue(ctx: EffectCtx, step: string): Promise<void> {
    // The boot-cache control has no queue: its bug is in the effect path.
    if (this.config.variant === WorkerVariant.BOOT_CACHE) return;
    // Back-pressure: a full queue takes no more (the backlog is what a halt discards or holds).
    if ((await this.#queue.depth()).total >= this.config.traffic.queue.maxDepth) return;
    const { runId, capability, ...rest } = ctx;
    try {
      await this.#queue.enqueue(
        { ...rest, runId, capability },
        { runId, step, capability },
        { id: `${runId}/${step}` },
      );
      this.counters.enqueued++;
    } catch (err) {
      if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
        this.counters.enqueueRefused++;
        this.#events.push({
          t: 'refused',
          at: drillNow(),
          ctx,
          cause: causeOf(err),
          kind: 'enqueue',
          ...flipSeqOf(err),
        });
        return;
      }
      if (!this.#stopping) throw err;
    }
  }

  // ---- the boot-cache negative control --------------------------------------------------

  /** KS-9.4.1 planted bug: evaluate once per run context at boot and never again. */
  async #readOnceAtBoot(): Promise<void> {
    // Give the source a moment to deliver its first state, as a careless worker would.
    const until = Date.now() + 5_000;
    while (!this.#everOpen && Date.now() < until) await delay(20);
    const t = this.config.traffic;
    for (let j = 0; j < t.runsPerWorker; j++) {
      const base = this.#runContext(j);
      for (const capability of [undefined, ...t.capabilities]) {
        const ctx = capability === undefined ? base : { ...base, capability };
        this.#bootCache.set(cacheKey(ctx), (await evaluateKill(this.#client, ctx)).halted);
      }
    }
  }

  #cached(ctx: KillContext): boolean {
    return this.#bootCache.get(cacheKey(ctx)) ?? false;
  }

  async #cachedEffect(
    ctx: EffectCtx,
    step: string,
    kind: string,
  ): Promise<'landed' | 'refused' | 'failed'> {
    if (this.#cached(ctx)) return 'refused';
    const key = effectKey(ctx.runId, step);
    const base = { key, runId: ctx.runId, step, capability: ctx.capability, context: ctx } as const;
    await this.#ledger.append({
      ...base,
      status: EffectStatus.INTENT,
      at: new Date().toISOString(),
    });
    try {
      await this.#tool(undefined, key, ctx, kind, 1, false);
      await this.#ledger.append({
        ...base,
        status: EffectStatus.LANDED,
        at: new Date().toISOString(),
      });
      this.counters.effectsLanded++;
      return 'landed';
    } catch (err) {
      await this.#ledger.append({
        ...base,
        status: EffectStatus.FAILED,
        at: new Date().toISOString(),
        detail: String(err).slice(0, 200),
      });
      this.counters.effectsFailed++;
      return 'failed';
    }
  }

  // ---- helpers ----------------------------------------------------------------------------

  #refused(ctx: KillContext, d: KillDecision, kind: string): void {
    this.#events.push({
      t: 'refused',
      at: drillNow(),
      ctx,
      cause: d.cause ?? 'halted',
      kind,
      ...(d.flip ? { flipSeq: d.flip.seq } : {}),
    });
  }

  #park(): Promise<void> {
    return this.#sleep(this.config.traffic.parkMs);
  }

  /** A sleep that stop() cuts short. */
  #sleep(ms: number): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(h);
        this.#stopWaiters.delete(done);
        resolve();
      };
      const h = setTimeout(done, ms);
      this.#stopWaiters.add(done);
    });
  }
}

const quietLogger = { warn: () => undefined };

/** What a queued drill task carries. */
interface TaskPayload {
  readonly runId: string;
  readonly step: string;
  readonly capability: string;
}

/** A queue journal that tells the worker what was appended, after it is durable. */
class ObservedJournal implements QueueJournal {
  readonly #inner: QueueJournal;
  readonly #onAppend: (records: readonly QueueJournalRecord[]) => Promise<void>;
  constructor(
    inner: QueueJournal,
    onAppend: (records: readonly QueueJournalRecord[]) => Promise<void>,
  ) {
    this.#inner = inner;
    this.#onAppend = onAppend;
  }
  async append(record: QueueJournalRecord): Promise<void> {
    await this.#inner.append(record);
    await this.#onAppend([record]);
  }
  async appendAll(records: readonly QueueJournalRecord[]): Promise<void> {
    await this.#inner.appendAll(records);
    await this.#onAppend(records);
  }
  read(): Promise<QueueJournalRecord[]> {
    return this.#inner.read();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

function cacheKey(ctx: KillContext): string {
  return JSON.stringify([ctx.tenant, ctx.feature, ctx.runId, ctx.capability]);
}

function causeOf(err: KillSwitchError): string {
  return (err as { haltCause?: string }).haltCause ?? 'halted';
}

function flipSeqOf(err: KillSwitchError): { flipSeq?: number } {
  const seq = (err as { flip?: { seq?: number } }).flip?.seq;
  return typeof seq === 'number' ? { flipSeq: seq } : {};
}

/** An abortable wait. */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const h = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(h);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** mulberry32: a small seeded PRNG, so a scenario's traffic replays. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
