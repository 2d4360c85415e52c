import { systemClock, type Clock } from '../internal/clock.js';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { HaltedError, InvalidOptionError, KillSwitchError, ErrorCode } from '../errors.js';
import { HaltCause } from '../model/halt-cause.js';
import { DrainPermit, drainPermits } from '../guard/drain-permit.js';
import { OperationState, StoppableOperation } from '../guard/stoppable-operation.js';
import type { HaltWatcher } from '../guard/halt-watcher.js';
import type { KillDecision } from '../guard/kill-decision.js';
import { Mutex } from '../internal/mutex.js';
import { DEFAULT_QUEUE_MODE, QueueMode } from '../model/flip-record.js';
import { formatSelector, type KillContext, type Selector } from '../model/selector.js';
import { inheritContext, runInScope, runOutsideScope } from '../scope/run-scope.js';
import { contextKey, taskContext, taskLineage } from './task-context.js';
import { FileQueueJournal } from './file-queue-journal.js';
import {
  pendingDiscards,
  type DiscardFilter,
  type DiscardedRecord,
  type QueueJournal,
  type QueueJournalRecord,
} from './queue-journal.js';
import {
  TaskState,
  type QueueDepth,
  type QueuedTask,
  type TaskConsumer,
  type TaskQueue,
  type Verdict,
} from './task-queue.js';

/** Watches kept before the first prune of contexts that left the queue. */
const PRUNE_MIN = 1024;

/** Removals in flight at once while discarding a backlog. */
const REMOVE_BATCH = 32;

/** Where the controller writes warnings. */
export interface QueueControllerLogger {
  warn(message: string): void;
}

/** Options of {@link QueueController}. */
export interface QueueControllerOptions<P> {
  /** The queue to control. Required. */
  readonly queue: TaskQueue<P>;
  /** Tells the controller when a queued context becomes halted; usually `guard.watcher`. Required. */
  readonly watcher: HaltWatcher;
  /**
   * Where discarded tasks are journaled before removal.
   * @default a {@link FileQueueJournal} at `journalPath`
   */
  readonly journal?: QueueJournal;
  /** Path of the default file journal. @default `./.killswitch/queue-<queue name>.journal.jsonl` */
  readonly journalPath?: string;
  /** Clock: its wall reading stamps journal records. @default systemClock */
  readonly clock?: Clock;
  /** @default console */
  readonly logger?: QueueControllerLogger;
}

/** What one pass of {@link QueueController.enforce} did. */
export interface EnforceResult {
  /** Tasks journaled and removed (`discard`). */
  readonly discarded: number;
  /** Tasks held (`hold`) by this pass. */
  readonly held: number;
  /** Discards that did not happen because a worker had taken the task (journaled as void). */
  readonly voided: number;
  /** True when the whole queue was paused because the empty context is halted. */
  readonly paused: boolean;
}

/** What {@link QueueController.resume} did. */
export interface ResumeResult {
  readonly released: number;
  readonly unpaused: boolean;
  /** Held tasks whose context is still halted (left held). */
  readonly stillHalted: number;
}

/** What {@link QueueController.requeue} did. */
export interface RequeueResult {
  readonly requeued: readonly { readonly taskId: string; readonly newTaskId: string }[];
  /** Journaled tasks whose context is still halted (left in the journal). */
  readonly refused: number;
}

/**
 * Runs one task a worker took. `signal` aborts on a matching halt the task's permit does not
 * cover; pass `permit` as `drainPermit` to every `guard.run` the task makes, so its effects still
 * dispatch under a `drain` halt appended after the task was admitted. KS-7.2.11
 */
export type TaskHandler<P> = (
  task: QueuedTask<P>,
  signal: AbortSignal,
  permit: DrainPermit,
) => Promise<unknown>;

/** A task taken to run: its stoppable operation (whose signal the handler gets) and its permit. */
interface TaskRun {
  readonly op: StoppableOperation;
  readonly permit: DrainPermit;
}

/** Options of {@link QueueController.work}. */
export interface WorkOptions {
  /** Tasks run at once. @default 1 */
  readonly concurrency?: number;
}

/**
 * Applies a halt's queue mode to the queued tasks whose context it matches (DESIGN section 1.2):
 *
 * - `discard` (the default, and what a halt without a mode means): journal each matching queued
 *   task durably, then remove it; {@link QueueController.requeue} enqueues them again after a
 *   resume. KS-7.2.2
 * - `hold`: keep them, durably, where no worker takes them; {@link QueueController.resume}
 *   releases them once their context is no longer halted. KS-7.2.4
 * - `drain`: refuse new matching tasks and let the queued ones run: each task carries its admission
 *   point (`admittedSeq`, the kill state's seq its enqueue check read), and its handler gets a
 *   {@link DrainPermit} that lets its guarded effects through drain halts appended after it.
 *   A task the permit would not cover (admitted after the drain, admission point unknown, or a
 *   `discard`/`hold` halt matching too) is held instead of run. KS-7.2.5, KS-7.2.11
 *
 * Producers are gated: {@link QueueController.enqueue} refuses a task whose context is halted
 * with `KS_HALTED`, whatever the mode. KS-7.2.6 Workers are gated: {@link QueueController.work}
 * evaluates the kill flag for every task a worker takes, before it runs, and holds or discards
 * a halted one by the same rules, so a task that a halt raced past is still stopped. KS-7.2.7
 * A halt that matches every context (global, or a stale or failing flag source) also pauses the
 * whole queue, so no worker takes anything. KS-7.2.9
 *
 * A fail-closed answer without a flip (STALE, ERROR) holds: it is not an operator's decision to
 * discard, and holding stops every task just as surely while losing nothing. KS-7.2.10
 *
 * @example
 * ```ts
 * const controller = new QueueController({ queue, watcher: guard.watcher });
 * await controller.start();
 * await controller.enqueue({ tenant: 'acme', runId: 'r1' }, { to: 'a@b.c' });
 * await controller.work(async (task, signal, permit) =>
 *   guard.run({ context: task.context, runId: 'r1', step: 'send', capability: 'email.send',
 *     drainPermit: permit }, (s) => sendEmail(task.payload, { signal: s })));
 * ```
 */
export class QueueController<P = unknown> {
  readonly queue: TaskQueue<P>;
  readonly journal: QueueJournal;
  readonly #watcher: HaltWatcher;
  readonly #clock: Clock;
  readonly #logger: QueueControllerLogger;
  readonly #mutex = new Mutex();
  readonly #watches = new Map<string, () => void>();
  readonly #consumers = new Set<TaskConsumer>();
  #running = false;
  #dirty = false;
  #pruneAt = PRUNE_MIN;
  /** Tasks admitted to run, with the controller that aborts their signal on a halt. */
  readonly #runs = new Map<string, TaskRun>();
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` when `queue` or `watcher` is missing */
  constructor(options: QueueControllerOptions<P>) {
    if (options?.queue === undefined || typeof options.queue.add !== 'function') {
      throw new InvalidOptionError('queue', 'a TaskQueue', options?.queue);
    }
    if (options.watcher === undefined || typeof options.watcher.watch !== 'function') {
      throw new InvalidOptionError('watcher', 'a HaltWatcher', options.watcher);
    }
    if (options.journal !== undefined && typeof options.journal.append !== 'function') {
      throw new InvalidOptionError('journal', 'a QueueJournal', options.journal);
    }
    this.queue = options.queue;
    this.#watcher = options.watcher;
    this.journal =
      options.journal ??
      new FileQueueJournal({
        path:
          options.journalPath ??
          join('.killswitch', `queue-${safeName(options.queue.name)}.journal.jsonl`),
      });
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? console;
  }

  /**
   * Watches the context of every task already queued and applies any halt already active (a
   * worker restarted during a halt). Call once before {@link QueueController.work}.
   */
  async start(): Promise<EnforceResult> {
    return this.enforce();
  }

  /**
   * Enqueues a task, unless its context is halted. KS-7.2.6
   *
   * @param context - the kill context the task will run under
   * @param payload - the task's data (JSON-serialisable for BullMQ and the journal)
   * @param options.name - the task's kind. @default 'task'
   * @param options.id - a caller-chosen id (adding a queued id again adds nothing)
   * @throws {HaltedError} `KS_HALTED` when a matching halt is active (or the flag fails closed)
   */
  async enqueue(
    context: KillContext,
    payload: P,
    options: { readonly name?: string; readonly id?: string } = {},
  ): Promise<QueuedTask<P>> {
    this.#checkOpen();
    // KS-4.9.2 an enqueue inside a run scope carries the run; KS-7.4.1 the run path is kept.
    const ctx = taskContext(inheritContext(context));
    // Watch first: a halt landing between the check and the add still reaches this task.
    this.#watch(ctx);
    const d = await this.#watcher.evaluate(ctx);
    if (d.halted) {
      throw new HaltedError(
        ErrorCode.HALTED,
        `enqueue refused: ${describe(d)}`,
        d.cause ?? HaltCause.HALTED,
        d.flip,
        d.failClosed,
      );
    }
    const task = await this.queue.add({
      name: options.name ?? 'task',
      payload,
      context: ctx,
      ...(options.id !== undefined ? { id: options.id } : {}),
      // KS-7.2.11 the admission point: no halt matching ctx with this seq or lower was active.
      ...(d.stateSeq !== undefined ? { admittedSeq: d.stateSeq } : {}),
    });
    // The halt may have landed while the add was in flight and its pass missed this task.
    if ((await this.#watcher.evaluate(ctx)).halted) await this.enforce();
    if (this.#watches.size >= this.#pruneAt) void this.#prune();
    return task;
  }

  /**
   * Applies every active halt's mode to the queued tasks now. Runs on its own whenever a watched
   * context becomes halted; call it yourself after a restart or to be sure. Passes never overlap.
   */
  enforce(): Promise<EnforceResult> {
    return this.#mutex.run(() => this.#enforce());
  }

  /**
   * Starts workers on the queue, gated per task: before a taken task runs, the kill flag is
   * evaluated for its context; halted means `hold` holds it, `discard` journals and removes it,
   * `drain` lets it run when its permit covers the halt (else holds it). While it runs, `signal`
   * aborts on a matching halt its permit does not cover. KS-7.2.7, KS-7.2.11
   *
   * @param handler - runs one task; gets the task, its signal and its {@link DrainPermit}
   */
  async work(handler: TaskHandler<P>, options: WorkOptions = {}): Promise<TaskConsumer> {
    this.#checkOpen();
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new InvalidOptionError('concurrency', 'an integer >= 1', concurrency);
    }
    const consumer = await this.queue.consume({
      concurrency,
      admit: (task) => this.#admit(task),
      handler: async (task) => {
        const run = this.#runs.get(task.id) ?? this.#startRun(task);
        try {
          // KS-7.4.2 the handler runs in the task's run scope (or in none: never in the scope of
          // whatever code started the worker), so what it guards, spawns and enqueues carries
          // the task's lineage.
          const lineage = taskLineage(task.context);
          const call = () => handler(task, run.op.signal, run.permit);
          return await (lineage !== undefined && lineage.runPath.length > 0
            ? runInScope(lineage, call)
            : runOutsideScope(call));
        } finally {
          // The permit is good only while the task runs (an effect started later is refused).
          run.permit.revoke();
          if (run.op.state === OperationState.RUNNING) run.op.settle();
          this.#runs.delete(task.id);
        }
      },
    });
    this.#consumers.add(consumer);
    return {
      close: async () => {
        this.#consumers.delete(consumer);
        await consumer.close();
      },
    };
  }

  /**
   * Releases held tasks whose context is no longer halted, and unpauses the queue when the empty
   * context is no longer halted. Tasks still halted stay held. KS-7.2.4
   */
  resume(): Promise<ResumeResult> {
    return this.#mutex.run(async () => {
      let released = 0;
      let stillHalted = 0;
      const held = (await this.queue.list()).filter((t) => t.state === TaskState.HELD);
      const decisions = await this.#decide(held);
      for (const t of held) {
        if (decisions.get(ctxKey(t.context))?.halted) stillHalted++;
        else if (await this.queue.release(t.id)) released++;
      }
      let unpaused = false;
      if ((await this.queue.isPaused()) && !(await this.#watcher.evaluate({})).halted) {
        await this.queue.resume();
        unpaused = true;
      }
      return { released, unpaused, stillHalted };
    });
  }

  /**
   * Enqueues discarded tasks again from the journal, once their context is no longer halted (an
   * explicit call, after a resume). Each is added with the id `<old id>-r`, so a repeated call,
   * or one after a crash between the add and its journal record, adds it once. KS-7.2.3
   */
  requeue(filter: Omit<DiscardFilter, 'queue'> = {}): Promise<RequeueResult> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      const open = pendingDiscards(await this.journal.read(), {
        ...filter,
        queue: this.queue.name,
      });
      const requeued: { taskId: string; newTaskId: string }[] = [];
      let refused = 0;
      for (const r of open) {
        const d = await this.#watcher.evaluate(r.context);
        if (d.halted) {
          refused++;
          continue;
        }
        this.#watch(r.context);
        const task = await this.queue.add({
          id: `${r.taskId}-r`,
          name: r.name,
          payload: r.payload as P,
          context: r.context,
          // Admitted again now: a drain halt older than the requeue does not cover it.
          ...(d.stateSeq !== undefined ? { admittedSeq: d.stateSeq } : {}),
        });
        await this.journal.append({
          type: 'requeued',
          queue: this.queue.name,
          taskId: r.taskId,
          newTaskId: task.id,
          at: new Date(this.#clock.wallNow()).toISOString(),
        });
        requeued.push({ taskId: r.taskId, newTaskId: task.id });
      }
      return { requeued, refused };
    });
  }

  /** Discarded tasks in the journal not yet requeued. */
  async discarded(filter: Omit<DiscardFilter, 'queue'> = {}): Promise<DiscardedRecord[]> {
    return pendingDiscards(await this.journal.read(), { ...filter, queue: this.queue.name });
  }

  /** Queue depth now, optionally for the tasks a selector matches. KS-7.2.8 */
  depth(selector?: Selector): Promise<QueueDepth> {
    return this.queue.depth(selector);
  }

  /** Stops the workers started here and the watches; the queue and journal stay open. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const unwatch of this.#watches.values()) unwatch();
    this.#watches.clear();
    await Promise.all([...this.#consumers].map((c) => c.close()));
    this.#consumers.clear();
    await this.#mutex.run(async () => undefined);
  }

  async #enforce(): Promise<EnforceResult> {
    if (this.#closed) return { discarded: 0, held: 0, voided: 0, paused: false };
    let paused = false;
    // KS-7.2.9: a halt matching every context stops every worker taking anything, at once.
    const all = await this.#watcher.evaluate({});
    if (all.halted && modeOf(all) !== QueueMode.DRAIN && !(await this.queue.isPaused())) {
      await this.queue.pause();
      paused = true;
    }
    const tasks = await this.queue.list();
    const decisions = await this.#decide(tasks);
    let discarded = 0;
    let held = 0;
    let voided = 0;
    const toDiscard: { task: QueuedTask<P>; record: DiscardedRecord }[] = [];
    for (const task of tasks) {
      const d = decisions.get(ctxKey(task.context));
      if (d === undefined || !d.halted || task.state === TaskState.ACTIVE) continue;
      const mode = taskMode(d, task);
      if (mode === QueueMode.HOLD && task.state === TaskState.WAITING) {
        if (await this.queue.hold(task.id, holdInfo(d, task))) held++;
      } else if (mode === QueueMode.DISCARD) {
        toDiscard.push({ task, record: this.#discardRecord(task, d) });
      }
    }
    if (toDiscard.length > 0) {
      // KS-7.2.2: journal (durably, one sync for the whole backlog) first, then remove, so no
      // removed task is missing from the journal.
      await this.journal.appendAll(toDiscard.map((x) => x.record));
      const voids: QueueJournalRecord[] = [];
      for (let i = 0; i < toDiscard.length; i += REMOVE_BATCH) {
        const batch = toDiscard.slice(i, i + REMOVE_BATCH);
        const results = await Promise.all(batch.map((x) => this.queue.remove(x.task.id)));
        results.forEach((r, j) => {
          const x = batch[j]!;
          if (r === 'removed') discarded++;
          else if (r === 'taken' || r === 'ran') {
            // A worker has it (its admission decides and journals on its own) or ran it already.
            voided++;
            voids.push({
              type: 'void',
              discardId: x.record.discardId,
              queue: this.queue.name,
              taskId: x.task.id,
              reason: `not removed: ${r}`,
              at: new Date(this.#clock.wallNow()).toISOString(),
            });
          }
        });
      }
      if (voids.length > 0) await this.journal.appendAll(voids);
    }
    // Keep watching every context still queued, so the next halt (or a changed mode) applies.
    for (const t of await this.queue.list()) this.#watch(t.context);
    return { discarded, held, voided, paused };
  }

  /** Worker admission: KS-7.2.7 */
  async #admit(task: QueuedTask<P>): Promise<Verdict> {
    // Watch before the check: a halt landing between the check and the handler's start must
    // still abort the task's signal (the watcher only fires on events after a watch exists).
    const run = this.#watchRun(task);
    run.op.check();
    const answer = await this.#watcher.evaluate(task.context);
    // A halt that landed during the check refused the run: that halt decides, not the answer.
    const d = run.op.stopped?.decision ?? answer;
    const mode = d.halted ? taskMode(d, task, run.permit) : undefined;
    if (mode === undefined || mode === QueueMode.DRAIN) {
      // A drained task runs to completion: the drain halts its permit covers do not abort it,
      // but the watch stays, so a discard or hold halt that lands later still does. KS-7.2.11
      run.op.start();
      this.#runs.set(task.id, run);
      return { action: 'run' };
    }
    run.permit.revoke();
    if (run.op.state === OperationState.CHECKING) run.op.refuse(d);
    if (mode === QueueMode.HOLD) {
      this.#watch(task.context);
      return { action: 'hold', info: holdInfo(d, task) };
    }
    await this.#journalDiscard(task, d);
    return { action: 'discard' };
  }

  /**
   * A task's run as a stoppable operation (KS-4.10): watching from here, its signal aborts on a
   * matching halt the task's permit does not cover.
   */
  #watchRun(task: QueuedTask<P>): TaskRun {
    const permit = permitOf(task);
    const op = new StoppableOperation({
      watcher: this.#watcher,
      context: task.context,
      permit,
      haltError: (s) =>
        new HaltedError(
          ErrorCode.ABORTED,
          `task aborted: ${describe(s.decision)}`,
          s.decision.cause ?? HaltCause.HALTED,
          s.decision.flip,
          s.decision.failClosed,
        ),
    });
    return { op, permit };
  }

  /** A run for a task the queue handed over without asking admission: checked by nobody, running. */
  #startRun(task: QueuedTask<P>): TaskRun {
    const run = this.#watchRun(task);
    run.op.check();
    run.op.start();
    return run;
  }

  /** Journals a discard durably. */
  async #journalDiscard(task: QueuedTask<P>, d: KillDecision): Promise<void> {
    await this.journal.append(this.#discardRecord(task, d));
  }

  #discardRecord(task: QueuedTask<P>, d: KillDecision): DiscardedRecord {
    return {
      type: 'discarded',
      discardId: randomUUID(),
      queue: this.queue.name,
      taskId: task.id,
      name: task.name,
      payload: task.payload,
      context: task.context,
      enqueuedAt: task.enqueuedAt,
      ...(d.flip !== undefined ? { haltSeq: d.flip.seq, haltId: d.flip.id } : {}),
      mode: QueueMode.DISCARD,
      cause: d.cause ?? HaltCause.HALTED,
      at: new Date(this.#clock.wallNow()).toISOString(),
    };
  }

  /** One evaluation per distinct context. */
  async #decide(tasks: readonly QueuedTask<P>[]): Promise<Map<string, KillDecision>> {
    const out = new Map<string, KillDecision>();
    const byKey = new Map<string, KillContext>();
    for (const t of tasks) byKey.set(ctxKey(t.context), t.context);
    await Promise.all(
      [...byKey].map(async ([k, ctx]) => {
        out.set(k, await this.#watcher.evaluate(ctx));
      }),
    );
    return out;
  }

  #watch(ctx: KillContext): void {
    if (this.#closed) return;
    const k = ctxKey(ctx);
    if (this.#watches.has(k)) return;
    const unwatch = this.#watcher.watch(
      ctx,
      () => {
        this.#watches.delete(k);
        this.#trigger();
      },
      'queued',
    );
    this.#watches.set(k, unwatch);
  }

  /**
   * Runs an enforcement pass soon. A halt that lands while a pass runs gets a pass of its own
   * after it: the running pass may have evaluated before the halt landed.
   */
  #trigger(): void {
    if (this.#running) {
      this.#dirty = true;
      return;
    }
    this.#running = true;
    void (async () => {
      do {
        this.#dirty = false;
        try {
          await this.enforce();
        } catch (err) {
          // Fail closed: the worker gate still refuses every halted task; say so loudly.
          this.#logger.warn(`queue ${this.queue.name}: enforcing a halt failed: ${String(err)}`);
        }
      } while (this.#dirty && !this.#closed);
      this.#running = false;
    })();
  }

  /**
   * Drops the watches of contexts no task is queued under any more (every run id would otherwise
   * leave one behind). Amortised: runs when the watch count doubles past the last prune.
   */
  #prune(): Promise<void> {
    this.#pruneAt = Number.POSITIVE_INFINITY; // one prune at a time
    return this.#mutex
      .run(async () => {
        const live = new Set((await this.queue.list()).map((t) => ctxKey(t.context)));
        for (const [k, unwatch] of this.#watches) {
          if (!live.has(k)) {
            unwatch();
            this.#watches.delete(k);
          }
        }
      })
      .catch((err: unknown) =>
        this.#logger.warn(`queue ${this.queue.name}: pruning watches failed: ${String(err)}`),
      )
      .finally(() => {
        this.#pruneAt = Math.max(PRUNE_MIN, 2 * this.#watches.size);
      });
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new KillSwitchError(
        ErrorCode.STORE_CLOSED,
        `queue controller of ${this.queue.name} is closed`,
      );
    }
  }
}

/**
 * The queue mode a decision asks for: the flip's mode, `discard` when a halt names none (the
 * safety default), `hold` when the answer failed closed without a flip (STALE, ERROR). KS-7.2.1,
 * KS-7.2.10
 */
export function modeOf(d: KillDecision): QueueMode {
  if (d.cause === HaltCause.STALE || d.cause === HaltCause.ERROR) return QueueMode.HOLD;
  return d.flip?.mode ?? DEFAULT_QUEUE_MODE;
}

/**
 * The mode a halted decision applies to one task: {@link modeOf}, except that `drain` runs only a
 * task its permit covers (every matching halt a drain halt appended after the task's admission,
 * KS-4.8.1); any other task is held, since the guard would refuse its effects. KS-7.2.11
 */
function taskMode<P>(d: KillDecision, task: QueuedTask<P>, permit = permitOf(task)): QueueMode {
  const mode = modeOf(d);
  if (mode === QueueMode.DRAIN && !drainPermits(d, permit, task.context)) return QueueMode.HOLD;
  return mode;
}

function permitOf<P>(task: QueuedTask<P>): DrainPermit {
  const seq = task.admittedSeq;
  return new DrainPermit({
    // A malformed stored value counts as unknown: the permit then covers nothing.
    admittedSeq: typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined,
    context: task.context,
    taskId: task.id,
  });
}

function holdInfo<P>(d: KillDecision, task?: QueuedTask<P>): { haltSeq?: number; reason: string } {
  const drained = task !== undefined && modeOf(d) === QueueMode.DRAIN;
  const why = drained
    ? `${describe(d)}; drain does not cover task ${task.id} (admitted at ${task.admittedSeq ?? 'an unknown seq'}${d.drainOnly === true ? '' : ', or a non-drain halt matches too'})`
    : describe(d);
  return { ...(d.flip !== undefined ? { haltSeq: d.flip.seq } : {}), reason: why };
}

function describe(d: KillDecision): string {
  return d.flip
    ? `halt #${d.flip.seq} on ${formatSelector(d.flip.selector)} (${d.flip.reason})`
    : `kill switch answered halted (${d.cause ?? HaltCause.HALTED}${d.failClosed ? `: ${d.failClosed}` : ''})`;
}

function ctxKey(ctx: KillContext): string {
  return contextKey(ctx);
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}
