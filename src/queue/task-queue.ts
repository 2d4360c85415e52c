import type { KillContext, Selector } from '../model/selector.js';

/**
 * Where a queued task is: `waiting` (a worker may take it), `held` (kept, but no worker takes it
 * until released), `active` (a worker took it).
 */
export const TaskState = { WAITING: 'waiting', HELD: 'held', ACTIVE: 'active' } as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

/** A task in a queue, with the kill context it will run under. */
export interface QueuedTask<P = unknown> {
  readonly id: string;
  /** The task's kind (BullMQ's job name). */
  readonly name: string;
  readonly payload: P;
  /** The kill context the task runs under; halts are matched against it. */
  readonly context: KillContext;
  /** ISO 8601 UTC instant the task was enqueued. */
  readonly enqueuedAt: string;
  /**
   * The seq of the kill state the controller's enqueue check read (the task's admission point for
   * `drain`, KS-7.2.11); absent when the flag source named none or the task bypassed the controller.
   */
  readonly admittedSeq?: number;
  readonly state: TaskState;
}

/** What {@link TaskQueue.add} takes. */
export interface NewTask<P = unknown> {
  readonly name: string;
  readonly payload: P;
  readonly context: KillContext;
  /** A caller-chosen id; adding an id that is already queued adds nothing. @default generated */
  readonly id?: string;
  /** The admission point to store with the task (durably, with the task). KS-7.2.11 */
  readonly admittedSeq?: number;
}

/** Counts of queued tasks at one moment (the drill reads them at T+0 and T+N). KS-7.2.8 */
export interface QueueDepth {
  readonly waiting: number;
  readonly held: number;
  readonly active: number;
  /** waiting + held + active */
  readonly total: number;
}

/** Why a task was held: the halt that held it, when the flag named one. */
export interface HoldInfo {
  readonly haltSeq?: number;
  readonly reason: string;
}

/**
 * The outcome of {@link TaskQueue.remove}: `removed` (it was queued and now is gone, never run),
 * `taken` (a worker holds it; nothing removed), `ran` (a worker started it before it was removed),
 * `missing` (no such task).
 */
export type RemoveResult = 'removed' | 'taken' | 'ran' | 'missing';

/** What a worker does with a task it took, decided by the kill flag just before it would run. */
export type Verdict =
  | { readonly action: 'run' }
  | { readonly action: 'hold'; readonly info: HoldInfo }
  | { readonly action: 'discard' };

/** Options of {@link TaskQueue.consume}. */
export interface ConsumeOptions<P> {
  /** Called for every task a worker takes, before it runs. Must journal before answering `discard`. */
  readonly admit: (task: QueuedTask<P>) => Promise<Verdict>;
  /** Runs an admitted task. */
  readonly handler: (task: QueuedTask<P>) => Promise<unknown>;
  /** Tasks run at once. */
  readonly concurrency: number;
}

/** A running consumer of a queue. */
export interface TaskConsumer {
  /** Stops taking tasks and waits for the running ones. */
  close(): Promise<void>;
}

/**
 * A queue the kill switch can stop: the operations {@link QueueController} needs to apply a
 * halt's mode to the tasks whose context matches. Implementations: {@link MemoryTaskQueue},
 * `BullMqTaskQueue` (providers/bullmq).
 */
export interface TaskQueue<P = unknown> {
  readonly name: string;
  /** Adds a task, ungated (the controller gates producers). */
  add(task: NewTask<P>): Promise<QueuedTask<P>>;
  /** Tasks not finished (waiting, held, active) whose context the selector matches. */
  list(selector?: Selector): Promise<QueuedTask<P>[]>;
  /**
   * Makes a waiting task untakeable, durably, until released. Returns false when the backend
   * cannot do it from outside a worker (then the worker's admission holds it when taken) or the
   * task is no longer waiting.
   */
  hold(id: string, info: HoldInfo): Promise<boolean>;
  /** Makes a held task takeable again; false when it was not held. */
  release(id: string): Promise<boolean>;
  /** Removes a waiting or held task. */
  remove(id: string): Promise<RemoveResult>;
  /** Stops every worker from taking any task (for a halt that matches every context). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  isPaused(): Promise<boolean>;
  depth(selector?: Selector): Promise<QueueDepth>;
  /** Starts workers that take tasks, ask `admit`, and run, hold or discard each. */
  consume(options: ConsumeOptions<P>): Promise<TaskConsumer>;
  close(): Promise<void>;
}
