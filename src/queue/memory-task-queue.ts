import { systemClock, type Clock } from '../internal/clock.js';
import { ErrorCode, InvalidOptionError, KillSwitchError } from '../errors.js';
import { selectorMatches, type Selector } from '../model/selector.js';
import { taskContext } from './task-context.js';
import {
  TaskState,
  type ConsumeOptions,
  type HoldInfo,
  type NewTask,
  type QueueDepth,
  type QueuedTask,
  type RemoveResult,
  type TaskConsumer,
  type TaskQueue,
} from './task-queue.js';

/** Options of {@link MemoryTaskQueue}. */
export interface MemoryTaskQueueOptions {
  /** @default 'memory' */
  readonly name?: string;
  /** Clock: its wall reading stamps `enqueuedAt`. @default systemClock */
  readonly clock?: Clock;
}

interface Entry<P> {
  task: QueuedTask<P>;
  hold?: HoldInfo;
}

/**
 * A FIFO task queue in this process: the reference implementation of {@link TaskQueue} and the
 * oracle the BullMQ adapter's tests mirror. Holding and removal are immediate and exact (one
 * thread owns the state); nothing survives the process.
 *
 * @example
 * ```ts
 * const queue = new MemoryTaskQueue<{ to: string }>();
 * const controller = new QueueController({ queue, watcher, journal });
 * ```
 */
export class MemoryTaskQueue<P = unknown> implements TaskQueue<P> {
  readonly name: string;
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry<P>>();
  readonly #wakers = new Set<() => void>();
  /** Ids of tasks a worker started, so a late removal can tell "ran" from "missing". */
  readonly #started = new Set<string>();
  #nextId = 1;
  #paused = false;
  #closed = false;

  constructor(options: MemoryTaskQueueOptions = {}) {
    if (
      options.name !== undefined &&
      (typeof options.name !== 'string' || options.name.length === 0)
    ) {
      throw new InvalidOptionError('name', 'a non-empty string', options.name);
    }
    this.name = options.name ?? 'memory';
    this.#clock = options.clock ?? systemClock;
  }

  async add(input: NewTask<P>): Promise<QueuedTask<P>> {
    this.#check();
    const id = input.id ?? `t${this.#nextId++}`;
    const existing = this.#entries.get(id);
    if (existing !== undefined) return existing.task;
    const task: QueuedTask<P> = Object.freeze({
      id,
      name: input.name,
      payload: input.payload,
      context: taskContext(input.context),
      enqueuedAt: new Date(this.#clock.wallNow()).toISOString(),
      ...(input.admittedSeq !== undefined ? { admittedSeq: input.admittedSeq } : {}),
      state: TaskState.WAITING,
    });
    this.#entries.set(id, { task });
    this.#wake();
    return task;
  }

  async list(selector: Selector = {}): Promise<QueuedTask<P>[]> {
    return [...this.#entries.values()]
      .map((e) => e.task)
      .filter((t) => selectorMatches(selector, t.context));
  }

  async hold(id: string, info: HoldInfo): Promise<boolean> {
    const e = this.#entries.get(id);
    if (e === undefined || e.task.state !== TaskState.WAITING) return false;
    e.task = { ...e.task, state: TaskState.HELD };
    e.hold = info;
    return true;
  }

  async release(id: string): Promise<boolean> {
    const e = this.#entries.get(id);
    if (e === undefined || e.task.state !== TaskState.HELD) return false;
    e.task = { ...e.task, state: TaskState.WAITING };
    delete e.hold;
    this.#wake();
    return true;
  }

  async remove(id: string): Promise<RemoveResult> {
    const e = this.#entries.get(id);
    if (e === undefined) return this.#started.has(id) ? 'ran' : 'missing';
    if (e.task.state === TaskState.ACTIVE) return 'taken';
    this.#entries.delete(id);
    return 'removed';
  }

  async pause(): Promise<void> {
    this.#paused = true;
  }

  async resume(): Promise<void> {
    this.#paused = false;
    this.#wake();
  }

  async isPaused(): Promise<boolean> {
    return this.#paused;
  }

  async depth(selector: Selector = {}): Promise<QueueDepth> {
    let waiting = 0;
    let held = 0;
    let active = 0;
    for (const { task } of this.#entries.values()) {
      if (!selectorMatches(selector, task.context)) continue;
      if (task.state === TaskState.WAITING) waiting++;
      else if (task.state === TaskState.HELD) held++;
      else active++;
    }
    return { waiting, held, active, total: waiting + held + active };
  }

  async consume(options: ConsumeOptions<P>): Promise<TaskConsumer> {
    this.#check();
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new InvalidOptionError('concurrency', 'an integer >= 1', options.concurrency);
    }
    let stopped = false;
    const loops: Promise<void>[] = [];
    const loop = async (): Promise<void> => {
      while (!stopped && !this.#closed) {
        const e = this.#take();
        if (e === undefined) {
          await new Promise<void>((resolve) => {
            const w = (): void => {
              this.#wakers.delete(w);
              resolve();
            };
            this.#wakers.add(w);
            stopWakers.add(w);
          });
          continue;
        }
        const task = e.task;
        try {
          const verdict = await options.admit(task);
          if (verdict.action === 'run') {
            this.#started.add(task.id);
            await options.handler(task).catch(() => undefined);
            this.#entries.delete(task.id);
          } else if (verdict.action === 'hold') {
            e.task = { ...task, state: TaskState.HELD };
            e.hold = verdict.info;
          } else {
            this.#entries.delete(task.id);
          }
        } catch {
          // Admission failed (a journal write, say): fail closed, keep the task but do not run it.
          e.task = { ...task, state: TaskState.HELD };
          e.hold = { reason: 'admission failed' };
        }
      }
    };
    const stopWakers = new Set<() => void>();
    for (let i = 0; i < options.concurrency; i++) loops.push(loop());
    return {
      close: async () => {
        stopped = true;
        for (const w of stopWakers) w();
        await Promise.all(loops);
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake();
  }

  /** The first waiting task, now active; none while paused. */
  #take(): Entry<P> | undefined {
    if (this.#paused) return undefined;
    for (const e of this.#entries.values()) {
      if (e.task.state === TaskState.WAITING) {
        e.task = { ...e.task, state: TaskState.ACTIVE };
        return e;
      }
    }
    return undefined;
  }

  #wake(): void {
    for (const w of [...this.#wakers]) w();
  }

  #check(): void {
    if (this.#closed)
      throw new KillSwitchError(ErrorCode.STORE_CLOSED, `queue ${this.name} is closed`);
  }
}
