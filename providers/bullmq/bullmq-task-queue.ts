import {
  DelayedError,
  Queue,
  Worker,
  type ConnectionOptions,
  type Job,
  type JobsOptions,
  type WorkerOptions,
} from 'bullmq';
import { InvalidOptionError } from '../../src/errors.js';
import { lineageContext, lineageFromJobData, type Lineage } from '../../src/lineage/lineage.js';
import { taskContext, taskLineage } from '../../src/queue/task-context.js';
import { selectorMatches, type KillContext, type Selector } from '../../src/model/selector.js';
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
} from '../../src/queue/task-queue.js';

/** Options of {@link BullMqTaskQueue}. */
export interface BullMqTaskQueueOptions {
  /** The BullMQ queue name. Required. */
  readonly name: string;
  /** Redis connection (ioredis options or instance). Required. */
  readonly connection: ConnectionOptions;
  /** Key prefix of the queue's Redis keys. @default 'bull' */
  readonly prefix?: string;
  /**
   * How far into the future a held job is parked in BullMQ's delayed set, in ms. It must exceed
   * any real delay you use (a delayed job parked at least this far is counted as held) and keep
   * BullMQ's delayed score exact (timestamp * 4096 below 2^53: before 2039). @default 5 years
   */
  readonly holdDelayMs?: number;
  /** Options for every job added. @default `{ removeOnComplete: 1000, removeOnFail: 5000 }` */
  readonly jobOptions?: JobsOptions;
  /** Extra Worker options (not `connection`, `prefix`, `concurrency`, `autorun`). */
  readonly workerOptions?: Omit<WorkerOptions, 'connection' | 'prefix' | 'concurrency' | 'autorun'>;
  /** @default console */
  readonly logger?: { warn(message: string): void };
}

/** What the adapter stores in `job.data`. */
interface JobData<P> {
  readonly payload: P;
  /**
   * The portable lineage (`{ tenant?, feature?, runPath }`), for workers that read job data
   * without this adapter (another language); KS-7.4.1. The adapter itself reads `ks.context`,
   * and `lineage` only for a job added without the adapter.
   */
  readonly lineage?: Lineage;
  readonly ks: {
    readonly context: KillContext;
    readonly enqueuedAt: string;
    /** The task's admission point for `drain` (KS-7.2.11); kept in Redis with the job. */
    readonly admittedSeq?: number;
  };
}

const DEFAULT_HOLD_MS = 5 * 365 * 24 * 3600 * 1000;
const RAN_TTL_S = 24 * 3600;

/**
 * A BullMQ queue the kill switch can stop, per selector. KS-7.3
 *
 * How each mode works on BullMQ (and why):
 * - **Global halts pause the queue** (`queue.pause()`): no worker takes anything. A tenant halt
 *   must not, because a pause stops every tenant. KS-7.3.1
 * - **Workers refuse matching jobs**: {@link BullMqTaskQueue.consume} wraps the processor; for
 *   each job it takes, the controller's admission evaluates the kill flag before the job runs. A
 *   held job is parked with `job.moveToDelayed(now + holdDelayMs, token)` and a `DelayedError`
 *   (BullMQ's documented way to defer a job from its processor); a discarded job is journaled,
 *   parked the same way, then removed. So no job of a halted tenant runs after the flip, and
 *   other tenants keep flowing. KS-7.3.2
 * - **Discard never uses `queue.drain()`** (it deletes waiting jobs with no record): each
 *   matching waiting job is journaled, then removed with `queue.remove(id)`, which refuses a job a
 *   worker holds (the discard is then voided in the journal, and the worker's admission decides).
 *   A job a worker started and finished between the journal write and the removal is detected by
 *   a per-job "ran" marker the worker sets before running it. KS-7.3.3
 * - **Hold from outside a worker** is only possible for delayed jobs (`changeDelay`); BullMQ has
 *   no way to park a waiting job without taking it, so waiting jobs of a held tenant are parked
 *   by the first worker that takes them (they never run). KS-7.3.4
 * - Held jobs live in Redis (durable) and are listed in `<prefix>:<name>:ks:held`; resume
 *   promotes them back to waiting.
 *
 * @example
 * ```ts
 * const queue = new BullMqTaskQueue({ name: 'emails', connection: { host: '127.0.0.1', port: 6379 } });
 * const controller = new QueueController({ queue, watcher: guard.watcher });
 * ```
 */
export class BullMqTaskQueue<P = unknown> implements TaskQueue<P> {
  readonly name: string;
  readonly #queue: Queue;
  readonly #connection: ConnectionOptions;
  readonly #prefix: string;
  readonly #holdMs: number;
  readonly #jobOptions: JobsOptions;
  readonly #workerOptions: BullMqTaskQueueOptions['workerOptions'];
  readonly #logger: { warn(message: string): void };
  readonly #workers = new Set<Worker>();

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a missing name or connection, or a bad holdDelayMs */
  constructor(options: BullMqTaskQueueOptions) {
    if (
      typeof options?.name !== 'string' ||
      options.name.length === 0 ||
      options.name.includes(':')
    ) {
      throw new InvalidOptionError('name', 'a non-empty queue name without ":"', options?.name);
    }
    if (options.connection === undefined || options.connection === null) {
      throw new InvalidOptionError('connection', 'ioredis connection options', options.connection);
    }
    const holdMs = options.holdDelayMs ?? DEFAULT_HOLD_MS;
    if (!Number.isFinite(holdMs) || holdMs < 60_000 || Date.now() + holdMs > 2 ** 53 / 4096) {
      throw new InvalidOptionError(
        'holdDelayMs',
        'ms >= 60000 that keeps now + holdDelayMs before 2039',
        holdMs,
      );
    }
    this.name = options.name;
    this.#connection = options.connection;
    this.#prefix = options.prefix ?? 'bull';
    this.#holdMs = holdMs;
    this.#jobOptions = options.jobOptions ?? { removeOnComplete: 1000, removeOnFail: 5000 };
    this.#workerOptions = options.workerOptions;
    this.#logger = options.logger ?? console;
    this.#queue = new Queue(this.name, { connection: this.#connection, prefix: this.#prefix });
    this.#queue.on('error', (err) =>
      this.#logger.warn(`bullmq queue ${this.name}: ${String(err)}`),
    );
  }

  /** The underlying BullMQ queue (for metrics, or to obliterate in tests). */
  get bullQueue(): Queue {
    return this.#queue;
  }

  async add(input: NewTask<P>): Promise<QueuedTask<P>> {
    const context = taskContext(input.context);
    const lineage = taskLineage(context);
    const data: JobData<P> = {
      payload: input.payload,
      ...(lineage !== undefined ? { lineage: { ...lineage, runPath: [...lineage.runPath] } } : {}),
      ks: {
        context,
        enqueuedAt: new Date().toISOString(),
        ...(input.admittedSeq !== undefined ? { admittedSeq: input.admittedSeq } : {}),
      },
    };
    const job = await this.#queue.add(input.name, data, {
      ...this.#jobOptions,
      ...(input.id !== undefined ? { jobId: input.id } : {}),
    });
    return this.#toTask(job as Job<JobData<P>>, TaskState.WAITING);
  }

  async list(selector: Selector = {}): Promise<QueuedTask<P>[]> {
    const out: QueuedTask<P>[] = [];
    const push = (jobs: Job[], state: (j: Job) => QueuedTask<P>['state']): void => {
      for (const j of jobs) {
        if (j === undefined || j === null) continue;
        const t = this.#toTask(j as Job<JobData<P>>, state(j));
        if (selectorMatches(selector, t.context)) out.push(t);
      }
    };
    const [waiting, delayed, active] = await Promise.all([
      this.#queue.getJobs(['wait', 'paused', 'prioritized'], 0, -1, true) as Promise<Job[]>,
      this.#queue.getJobs(['delayed'], 0, -1, true) as Promise<Job[]>,
      this.#queue.getJobs(['active'], 0, -1, true) as Promise<Job[]>,
    ]);
    push(waiting, () => TaskState.WAITING);
    push(delayed, (j) => (this.#isParked(j) ? TaskState.HELD : TaskState.WAITING));
    push(active, () => TaskState.ACTIVE);
    return out;
  }

  async hold(id: string, info: HoldInfo): Promise<boolean> {
    const job = await this.#queue.getJob(id);
    if (job === undefined || job === null) return false;
    if ((await job.getState()) !== 'delayed' || this.#isParked(job)) return false;
    const due = job.timestamp + (job.delay ?? 0);
    await this.#markHeld(id, { ...info, due });
    await job.changeDelay(this.#holdMs);
    return true;
  }

  async release(id: string): Promise<boolean> {
    const client = await this.#queue.client;
    const raw = await client.hget(this.#heldKey, id);
    const job = await this.#queue.getJob(id);
    if (
      job === undefined ||
      job === null ||
      (await job.getState()) !== 'delayed' ||
      (!this.#isParked(job) && raw === null)
    ) {
      await client.hdel(this.#heldKey, id);
      return false;
    }
    let due = 0;
    try {
      due = raw === null ? 0 : Number((JSON.parse(raw) as { due?: number }).due ?? 0);
    } catch {
      due = 0;
    }
    if (due > Date.now()) await job.changeDelay(due - Date.now());
    else await job.promote();
    await client.hdel(this.#heldKey, id);
    return true;
  }

  async remove(id: string): Promise<RemoveResult> {
    const client = await this.#queue.client;
    const job = await this.#queue.getJob(id);
    if (job === undefined || job === null) {
      await client.hdel(this.#heldKey, id);
      // Gone: finished and removed on completion (it ran), or removed by another discarder.
      return (await client.get(this.#ranKey(id))) !== null ? 'ran' : 'missing';
    }
    const state = await job.getState();
    if (state === 'active') return 'taken';
    if (state === 'completed' || state === 'failed') return 'ran';
    const code = await this.#queue.remove(id);
    if (code !== 1) return 'taken';
    await client.hdel(this.#heldKey, id);
    // A worker that took and finished the job between our read and the removal set this first.
    return (await client.get(this.#ranKey(id))) !== null ? 'ran' : 'removed';
  }

  async pause(): Promise<void> {
    await this.#queue.pause();
  }

  async resume(): Promise<void> {
    await this.#queue.resume();
  }

  isPaused(): Promise<boolean> {
    return this.#queue.isPaused();
  }

  async depth(selector: Selector = {}): Promise<QueueDepth> {
    let waiting = 0;
    let held = 0;
    let active = 0;
    for (const t of await this.list(selector)) {
      if (t.state === TaskState.WAITING) waiting++;
      else if (t.state === TaskState.HELD) held++;
      else active++;
    }
    return { waiting, held, active, total: waiting + held + active };
  }

  async consume(options: ConsumeOptions<P>): Promise<TaskConsumer> {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new InvalidOptionError('concurrency', 'an integer >= 1', options.concurrency);
    }
    const client = await this.#queue.client;
    const worker = new Worker(
      this.name,
      async (job: Job, token?: string) => {
        const task = this.#toTask(job as Job<JobData<P>>, TaskState.ACTIVE);
        let verdict;
        try {
          verdict = await options.admit(task);
        } catch (err) {
          // Fail closed: admission could not decide (a journal write failed): park, never run.
          this.#logger.warn(
            `bullmq ${this.name}: admission of job ${job.id} failed, holding it: ${String(err)}`,
          );
          verdict = { action: 'hold', info: { reason: 'admission failed' } } as const;
        }
        if (verdict.action === 'run') {
          await client.set(this.#ranKey(job.id!), '1', { EX: RAN_TTL_S });
          return await options.handler(task);
        }
        if (token === undefined) throw new Error('bullmq gave the processor no lock token');
        if (verdict.action === 'hold') {
          await this.#markHeld(job.id!, verdict.info);
          await job.moveToDelayed(Date.now() + this.#holdMs, token);
        } else {
          // The admission journaled it; park it (releases the lock), then remove it.
          await job.moveToDelayed(Date.now() + this.#holdMs, token);
          const code = await this.#queue.remove(job.id!);
          if (code !== 1)
            this.#logger.warn(
              `bullmq ${this.name}: discarded job ${job.id} could not be removed; it stays parked`,
            );
        }
        throw new DelayedError();
      },
      {
        ...this.#workerOptions,
        connection: this.#connection,
        prefix: this.#prefix,
        concurrency: options.concurrency,
      },
    );
    worker.on('error', (err) => this.#logger.warn(`bullmq worker ${this.name}: ${String(err)}`));
    this.#workers.add(worker);
    await worker.waitUntilReady();
    return {
      close: async () => {
        this.#workers.delete(worker);
        await worker.close();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#workers].map((w) => w.close()));
    this.#workers.clear();
    await this.#queue.close();
  }

  get #heldKey(): string {
    return `${this.#prefix}:${this.name}:ks:held`;
  }

  #ranKey(id: string): string {
    return `${this.#prefix}:${this.name}:ks:ran:${id}`;
  }

  async #markHeld(id: string, info: HoldInfo & { due?: number }): Promise<void> {
    const client = await this.#queue.client;
    await client.hset(this.#heldKey, {
      [id]: JSON.stringify({ ...info, at: new Date().toISOString() }),
    });
  }

  /** A delayed job parked at least half the hold distance away is one of ours. */
  #isParked(job: Job): boolean {
    return (job.delay ?? 0) >= this.#holdMs / 2;
  }

  #toTask(job: Job<JobData<P>>, state: QueuedTask<P>['state']): QueuedTask<P> {
    const data = job.data as Partial<JobData<P>> | undefined;
    return {
      id: String(job.id),
      name: job.name,
      payload: (data?.ks !== undefined ? data.payload : (job.data as unknown)) as P,
      // A job added without the adapter has no context (only halts that match every context
      // apply), unless it carries a lineage (KS-7.4.1).
      context: data?.ks?.context ?? contextOfForeignJob(job.data),
      enqueuedAt: data?.ks?.enqueuedAt ?? new Date(job.timestamp).toISOString(),
      // Only a well-formed seq counts; anything else leaves the task without one (drain refuses).
      ...(isSeq(data?.ks?.admittedSeq) ? { admittedSeq: data.ks.admittedSeq } : {}),
      state,
    };
  }
}

function isSeq(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * The context of a job added without the adapter: its `lineage` field when it has one. A lineage
 * that does not parse gives a context whose run path fails closed at evaluation, naming why.
 */
function contextOfForeignJob(data: unknown): KillContext {
  try {
    const l = lineageFromJobData(data);
    return l === undefined ? {} : lineageContext(l);
  } catch (err) {
    return { runPath: `invalid lineage in job data: ${(err as Error).message}` as never };
  }
}
