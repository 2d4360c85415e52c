import type { Client } from '@openfeature/server-sdk';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import type { EffectGuard } from '../../guard/effect-guard.js';
import { evaluateKill, type KillDecision } from '../../guard/kill-decision.js';
import { EffectStatus, effectKey, type SideEffectLedger } from '../../ledger/side-effect-ledger.js';
import type { KillContext } from '../../model/selector.js';
import type { QueueController } from '../../queue/queue-controller.js';
import type { TaskConsumer } from '../../queue/task-queue.js';
import type { Scheduler } from '../../schedule/scheduler.js';
import { systemClock } from '../../internal/clock.js';
import type { WorkerConfig, WorkerCounters, WorkerEvent } from '../internal/protocol.js';
import { runIdOf } from '../scenario.js';
import type { TaskPayload, VariantTraits } from './variants.js';

/** The context of a tool effect: a run and a capability. */
export type EffectCtx = KillContext & { readonly runId: string; readonly capability: string };

/** What the traffic runs on: the worker's production parts, opened by {@link DrillWorker}. */
export interface TrafficParts {
  readonly config: WorkerConfig;
  readonly traits: VariantTraits;
  readonly counters: WorkerCounters;
  readonly events: WorkerEvent[];
  readonly client: Client;
  readonly ledger: SideEffectLedger;
  readonly guard: EffectGuard;
  readonly scheduler: Scheduler;
  readonly queue: QueueController<TaskPayload>;
}

/**
 * The synthetic agent traffic of one drill worker: runs across tenants and features call a slow
 * LLM (cancelled in flight by a halt), emit tool effects to the sink through the
 * {@link EffectGuard} (every effect evaluates `kill-switch`; nothing is cached), retry failed
 * effects with back-off and set follow-up timers through the {@link Scheduler}, and enqueue tasks
 * that a consumer runs. A negative-control variant changes it only through its
 * {@link VariantTraits}. KS-9.2.3
 */
export class Traffic {
  readonly #p: TrafficParts;
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
  /** toolIgnoresAbortMs: the keys of the calls held open across flips, open now. */
  readonly #heldOpen = new Set<string>();
  /** readsOnceAtBoot: the decisions read once at boot. */
  readonly #bootCache = new Map<string, boolean>();

  constructor(parts: TrafficParts) {
    this.#p = parts;
  }

  /** Starts the run loops and the queue consumer. `everOpen` tells when the source was first fresh. */
  async start(everOpen: () => boolean): Promise<void> {
    const t = this.#p.config.traffic;
    if (this.#p.traits.readsOnceAtBoot) await this.#readOnceAtBoot(everOpen);
    for (let j = 0; j < t.runsPerWorker; j++) this.#loops.push(this.#runLoop(j));
    if (this.#p.traits.toolIgnoresAbortMs !== undefined && !this.#p.traits.readsOnceAtBoot)
      this.#holdAcrossFlips();
    if (!this.#p.traits.readsOnceAtBoot) {
      this.#consumer = await this.#p.queue.work(async (task) => {
        this.#p.counters.dequeued++;
        const p = task.payload;
        await this.effect(
          { ...task.context, runId: p.runId, capability: p.capability },
          p.step,
          'queue',
          false,
        );
        // The consumer is slower than the producers, so a backlog builds for a halt to act on.
        await this.sleep(t.queue.consumeEveryMs);
      });
    }
  }

  /** Whether stop() was called. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Stops the run loops and the consumer (in-flight work may still settle: see {@link settled}). */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const w of this.#stopWaiters) w();
    await Promise.allSettled(this.#loops);
    await this.#consumer?.close();
  }

  /** Resolves when every timer and guarded effect has settled (after the scheduler closed). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#timerDone]);
    while (this.#effects.size > 0) await Promise.allSettled([...this.#effects]);
  }

  #push(e: WorkerEvent): void {
    this.#p.events.push(e);
  }

  /**
   * KS-9.4.3 made deterministic: a tool that ignores its abort signal is caught only if a call is
   * in flight when a halt reaches it, which loose timing leaves to chance. So the worker keeps one
   * call open per run context and capability (every context its effects ever have, so any lever
   * that reaches the worker matches one) until a halt aborts it; the call then ignores the abort
   * and lands, and the next one opens once the context runs again. A call refused (not fresh
   * yet, or halted) is tried again after a pause; one no halt reached fails quietly at stop
   * (nothing leaves, the ledger says failed).
   */
  #holdAcrossFlips(): void {
    const t = this.#p.config.traffic;
    for (let j = 0; j < t.runsPerWorker; j++) {
      const base = this.#runContext(j);
      for (const capability of t.capabilities)
        this.#loops.push(this.#holdLoop({ ...base, capability }));
    }
  }

  /** How many calls are held open now, of how many this traffic holds. KS-9.4.3 */
  heldCalls(): { open: number; total: number } {
    const t = this.#p.config.traffic;
    const holds =
      this.#p.traits.toolIgnoresAbortMs !== undefined && !this.#p.traits.readsOnceAtBoot;
    return {
      open: this.#heldOpen.size,
      total: holds ? t.runsPerWorker * t.capabilities.length : 0,
    };
  }

  async #holdLoop(ctx: EffectCtx): Promise<void> {
    // Refusals are recorded under their key too, so every attempt has a key of its own.
    for (let n = 0; !this.#stopping; n++) {
      try {
        await this.#guarded(ctx, `held-${ctx.capability}-${n}`, 'held', 1, false, true);
      } catch (err) {
        // KS_ABORTED: a halt reached it (its late landing is recorded); anything else: refused.
        if (!(err instanceof KillSwitchError && err.code === ErrorCode.ABORTED)) await this.#park();
      }
    }
  }

  #runContext(j: number): { runId: string; tenant: string; feature: string } {
    const c = this.#p.config;
    const t = c.traffic;
    const w = Number(/^w(\d+)$/.exec(c.workerId)?.[1] ?? '0');
    const i = w * t.runsPerWorker + j;
    return {
      runId: runIdOf(c.workerId, j),
      tenant: t.tenants[i % t.tenants.length]!,
      // A different stride, so tenants and features cross.
      feature: t.features[Math.floor(i / t.tenants.length + i) % t.features.length]!,
    };
  }

  async #runLoop(j: number): Promise<void> {
    const c = this.#p.config;
    const t = c.traffic;
    const base = this.#runContext(j);
    const random = prng(c.seed * 7919 + j * 104729 + hash(c.workerId));
    let n = 0;
    while (!this.#stopping) {
      const capability = t.capabilities[(n + j) % t.capabilities.length]!;
      const ctx: EffectCtx = { ...base, capability };
      const step = `s${n}`;
      // 1. the LLM call (a run-level context: a capability halt does not stop thinking).
      const llm = await this.llm(base);
      if (llm === 'halted') {
        await this.#park();
        continue;
      }
      // 2. the tool effect, with retries through the scheduler.
      const fail = random() < t.failureRate;
      const outcome = await this.effect(ctx, step, 'run', fail);
      // A refused or aborted step is abandoned and the run moves on, as an agent whose tool is
      // frozen carries on with its other tools: a capability halt must not stall the rest.
      n++;
      if (outcome === 'landed') {
        if (n % t.timers.everySteps === 0) void this.timer(ctx, `${step}-timer`);
        if (n % t.queue.enqueueEverySteps === 0) await this.#enqueue(ctx, `${step}-task`);
      } else {
        await this.#park();
      }
      await this.sleep(t.stepPauseMs);
    }
  }

  /**
   * A slow LLM call for a run-level context: refused while the context is halted, cancelled in
   * flight by a matching halt. Resolves `halted` for either (and for a failed call).
   */
  async llm(ctx: KillContext): Promise<'ok' | 'halted'> {
    const { config: c, traits, counters } = this.#p;
    if (traits.readsOnceAtBoot) {
      if (this.#cached(ctx)) return 'halted';
    } else {
      const d = await evaluateKill(this.#p.client, ctx);
      if (d.halted) {
        this.#refused(ctx, d, 'llm');
        return 'halted';
      }
    }
    const controller = new AbortController();
    let cancelled = false;
    const unwatch = traits.readsOnceAtBoot
      ? () => undefined
      : this.#p.guard.watcher.watch(ctx, () => {
          cancelled = true;
          controller.abort();
        });
    counters.llmStarted++;
    try {
      const res = await fetch(
        `${c.llmUrl}/v1/generate?tokens=${c.traffic.llm.tokens}&interval=${c.traffic.llm.tokenIntervalMs}`,
        { method: 'POST', body: '{}', signal: controller.signal },
      );
      await res.text();
      counters.llmCompleted++;
      return 'ok';
    } catch {
      if (cancelled) {
        counters.llmCancelled++;
        this.#push({ t: 'cancel', at: systemClock.now(), ctx, kind: 'llm' });
      }
      return 'halted';
    } finally {
      unwatch();
    }
  }

  /**
   * A tool effect through the guard, retried with back-off through the scheduler. `backoff` is
   * told when the effect starts (+1) and stops (-1) waiting for a retry.
   */
  async effect(
    ctx: EffectCtx,
    step: string,
    kind: string,
    fail: boolean,
    backoff?: (delta: 1 | -1) => void,
  ): Promise<'landed' | 'refused' | 'aborted' | 'failed'> {
    if (this.#p.traits.readsOnceAtBoot) return this.#cachedEffect(ctx, step, kind);
    const t = this.#p.config.traffic;
    const counters = this.#p.counters;
    let attempting = false;
    let waiting = false;
    const wait = (on: boolean) => {
      if (on !== waiting) backoff?.(on ? 1 : -1);
      waiting = on;
    };
    try {
      await this.#p.scheduler.retry(
        ctx,
        async (_signal, attempt) => {
          attempting = true;
          wait(false);
          if (attempt > 1) {
            counters.retriesFired++;
            this.#push({ t: 'fire', at: systemClock.now(), ctx, kind: 'retry' });
          }
          try {
            return await this.#guarded(ctx, step, kind, attempt, fail && attempt === 1);
          } catch (err) {
            const halt =
              err instanceof KillSwitchError &&
              (err.code === ErrorCode.HALTED || err.code === ErrorCode.ABORTED);
            if (!halt && attempt < t.retry.maxAttempts) {
              counters.retriesScheduled++;
              wait(true);
            }
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
      counters.effectsLanded++;
      return 'landed';
    } catch (err) {
      if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
        counters.effectsRefused++;
        this.#push({
          t: 'refused',
          at: systemClock.now(),
          ctx,
          cause: causeOf(err),
          kind,
          ...flipSeqOf(err),
        });
        return 'refused';
      }
      if (err instanceof KillSwitchError && err.code === ErrorCode.ABORTED) {
        if (attempting) {
          counters.effectsAborted++;
          this.#push({ t: 'cancel', at: systemClock.now(), ctx, kind: 'tool' });
        } else {
          // Halted during the back-off sleep: the retry was unscheduled.
          counters.retriesCancelled++;
          this.#push({ t: 'unscheduled', at: systemClock.now(), ctx, kind: 'retry' });
        }
        return 'aborted';
      }
      counters.effectsFailed++;
      return 'failed';
    } finally {
      wait(false);
    }
  }

  /** One attempt of a tool effect through the guard (tracked, so stop() waits for it). */
  #guarded(
    ctx: EffectCtx,
    step: string,
    kind: string,
    attempt: number,
    fail: boolean,
    hold = false,
  ): Promise<void> {
    const p = this.#guardRun(ctx, step, kind, attempt, fail, hold);
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
    hold: boolean,
  ): Promise<void> {
    return this.#p.guard.run(
      { context: ctx, runId: ctx.runId, step, capability: ctx.capability, idempotent: true },
      (signal, info) => this.#tool(signal, info.key, ctx, kind, attempt, fail, hold),
    );
  }

  /**
   * The tool: some work (an abortable wait), then the effect (a POST to the sink). A well-behaved
   * tool checks its signal before emitting and passes it to fetch; a variant with
   * `toolIgnoresAbortMs` does neither, so its effect lands after the halt. A `hold` call works
   * until a halt aborts it (see {@link Traffic.#holdAcrossFlips}).
   */
  async #tool(
    signal: AbortSignal | undefined,
    key: string,
    ctx: EffectCtx,
    kind: string,
    attempt: number,
    fail: boolean,
    hold = false,
  ): Promise<void> {
    const c = this.#p.config;
    const ignoreMs = this.#p.traits.toolIgnoresAbortMs;
    const ignore = ignoreMs !== undefined;
    const use = ignore ? undefined : signal;
    if (hold) {
      this.#heldOpen.add(key);
      try {
        await this.#untilAbortedOrStopping(signal);
      } finally {
        this.#heldOpen.delete(key);
      }
      if (!signal?.aborted) throw new Error('held call: the traffic stopped before a halt');
    } else {
      await delay(
        ignore ? Math.max(c.traffic.toolLatencyMs, ignoreMs) : c.traffic.toolLatencyMs,
        use,
      );
    }
    use?.throwIfAborted();
    const sentAt = systemClock.now();
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
      this.#p.counters.effectsLandedAfterHalt++;
      this.#push({ t: 'late-landing', at: systemClock.now(), ctx, key });
    }
    if (!res.ok) throw new Error(`sink answered ${res.status}`);
  }

  /**
   * Sets a follow-up timer through the scheduler (a halt cancels it; its effect goes through the
   * guard). Resolves when the timer fired and its effect settled, or was cancelled.
   */
  timer(ctx: EffectCtx, step: string, delayMs?: number): Promise<void> {
    const t = this.#p.config.traffic;
    const delay = delayMs ?? t.timers.delayMs;
    const counters = this.#p.counters;
    counters.timersScheduled++;
    if (this.#p.traits.readsOnceAtBoot) {
      // The cached worker sets a plain timer: nothing cancels it.
      const p = new Promise<void>((resolve) => {
        const h = setTimeout(() => {
          this.#stopWaiters.delete(cancel);
          counters.timersFired++;
          this.#push({ t: 'fire', at: systemClock.now(), ctx, kind: 'timer' });
          void this.#cachedEffect(ctx, step, 'timer').finally(resolve);
        }, delay);
        const cancel = () => {
          clearTimeout(h);
          resolve();
        };
        this.#stopWaiters.add(cancel);
      });
      this.#trackTimer(p);
      return p;
    }
    let timer: ReturnType<Scheduler['schedule']>;
    try {
      timer = this.#p.scheduler.schedule(
        ctx,
        delay,
        async () => {
          counters.timersFired++;
          this.#push({ t: 'fire', at: systemClock.now(), ctx, kind: 'timer' });
          await this.#guarded(ctx, step, 'timer', 1, false);
        },
        { step },
      );
    } catch {
      return Promise.resolve(); // the scheduler is closed: the worker is stopping
    }
    return this.#trackTimer(
      timer.done.catch((err: unknown) => {
        if (
          timer.state === 'cancelled' &&
          err instanceof KillSwitchError &&
          err.code === ErrorCode.ABORTED
        ) {
          counters.timersCancelled++;
          this.#push({ t: 'unscheduled', at: systemClock.now(), ctx, kind: 'timer' });
        } else if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
          this.#push({
            t: 'refused',
            at: systemClock.now(),
            ctx,
            cause: causeOf(err),
            kind: 'timer',
            ...flipSeqOf(err),
          });
        }
      }),
    );
  }

  #trackTimer(p: Promise<unknown>): Promise<void> {
    this.#timerDone.add(p);
    return p.then(
      () => void this.#timerDone.delete(p),
      () => void this.#timerDone.delete(p),
    );
  }

  async #enqueue(ctx: EffectCtx, step: string): Promise<void> {
    // The boot-cache control has no queue: its bug is in the effect path.
    if (this.#p.traits.readsOnceAtBoot) return;
    const queue = this.#p.queue;
    // Back-pressure: a full queue takes no more (the backlog is what a halt discards or holds).
    if ((await queue.depth()).total >= this.#p.config.traffic.queue.maxDepth) return;
    const { runId, capability, ...rest } = ctx;
    try {
      await queue.enqueue(
        { ...rest, runId, capability },
        { runId, step, capability },
        { id: `${runId}/${step}` },
      );
      this.#p.counters.enqueued++;
    } catch (err) {
      if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
        this.#p.counters.enqueueRefused++;
        this.#push({
          t: 'refused',
          at: systemClock.now(),
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

  // ---- readsOnceAtBoot: the boot-cache negative control -------------------------------------

  /** KS-9.4.1 planted bug: evaluate once per run context at boot and never again. */
  async #readOnceAtBoot(everOpen: () => boolean): Promise<void> {
    // Give the source a moment to deliver its first state, as a careless worker would.
    const until = Date.now() + 5_000;
    while (!everOpen() && Date.now() < until) await delay(20);
    const t = this.#p.config.traffic;
    for (let j = 0; j < t.runsPerWorker; j++) {
      const base = this.#runContext(j);
      for (const capability of [undefined, ...t.capabilities]) {
        const ctx = capability === undefined ? base : { ...base, capability };
        this.#bootCache.set(cacheKey(ctx), (await evaluateKill(this.#p.client, ctx)).halted);
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
    const ledger = this.#p.ledger;
    const key = effectKey(ctx.runId, step);
    const base = { key, runId: ctx.runId, step, capability: ctx.capability, context: ctx } as const;
    await ledger.append({
      ...base,
      status: EffectStatus.INTENT,
      at: new Date().toISOString(),
    });
    try {
      await this.#tool(undefined, key, ctx, kind, 1, false);
      await ledger.append({
        ...base,
        status: EffectStatus.LANDED,
        at: new Date().toISOString(),
      });
      this.#p.counters.effectsLanded++;
      return 'landed';
    } catch (err) {
      await ledger.append({
        ...base,
        status: EffectStatus.FAILED,
        at: new Date().toISOString(),
        detail: String(err).slice(0, 200),
      });
      this.#p.counters.effectsFailed++;
      return 'failed';
    }
  }

  // ---- helpers ----------------------------------------------------------------------------

  #refused(ctx: KillContext, d: KillDecision, kind: string): void {
    this.#push({
      t: 'refused',
      at: systemClock.now(),
      ctx,
      cause: d.cause ?? 'halted',
      kind,
      ...(d.flip ? { flipSeq: d.flip.seq } : {}),
    });
  }

  /** Resolves when the signal aborts or stop() is called. */
  #untilAbortedOrStopping(signal: AbortSignal | undefined): Promise<void> {
    if (this.#stopping || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#stopWaiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#stopWaiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  #park(): Promise<void> {
    return this.sleep(this.#p.config.traffic.parkMs);
  }

  /** A sleep that stop() cuts short. */
  sleep(ms: number): Promise<void> {
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
