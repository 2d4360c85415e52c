import { OpenFeature, ProviderEvents, type Client } from '@openfeature/server-sdk';
import { EffectGuard } from '../../guard/effect-guard.js';
import { FileSideEffectLedger } from '../../ledger/file-side-effect-ledger.js';
import type { SideEffectLedger } from '../../ledger/side-effect-ledger.js';
import type { Selector } from '../../model/selector.js';
import { KillSwitchProvider } from '../../provider/kill-switch-provider.js';
import { FileQueueJournal } from '../../queue/file-queue-journal.js';
import { MemoryTaskQueue } from '../../queue/memory-task-queue.js';
import { QueueController } from '../../queue/queue-controller.js';
import { Scheduler } from '../../schedule/scheduler.js';
import type { FlipSource } from '../../source/flip-source.js';
import { RemoteFlipSource } from '../../../providers/remote/index.js';
import { systemClock } from '../../internal/clock.js';
import {
  zeroCounters,
  type HeldCalls,
  type TreeAtFlip,
  type TreeTask,
  type QueueDepth,
  type WorkerConfig,
  type WorkerCounters,
  type WorkerEvent,
} from '../internal/protocol.js';
import { ObservedFlipSource } from './observed-source.js';
import { ObservedJournal } from './observed-journal.js';
import { RunTree } from './run-tree.js';
import { prng, Traffic } from './traffic.js';
import { VARIANT_TRAITS, type TaskPayload } from './variants.js';

/** What a drill worker reports as it runs (the IPC side, or a test). */
export interface DrillWorkerSink {
  applied(seq: number, at: number): void;
  status(status: string, at: number): void;
  /** Sends a run-tree child's work to worker `to` (through the drill). */
  dispatch?(to: string, lineage: unknown, task: TreeTask): void;
}

/**
 * One drill worker's lifecycle: opens its side-effect ledger, binds
 * `KillSwitchProvider({ source: RemoteFlipSource })` against the control plane, builds the
 * production guard, scheduler and queue controller, runs the {@link Traffic} on them, and closes
 * everything in order on stop. Negative-control variants plant one bug each, described by their
 * row of {@link VARIANT_TRAITS}. KS-9.2.3
 */
export class DrillWorker {
  readonly config: WorkerConfig;
  readonly counters: WorkerCounters = zeroCounters();
  readonly #events: WorkerEvent[] = [];
  #collected = 0;
  readonly #report: DrillWorkerSink;
  #ledger!: SideEffectLedger;
  #client!: Client;
  #guard!: EffectGuard;
  #scheduler!: Scheduler;
  #queue!: QueueController<TaskPayload>;
  #traffic!: Traffic;
  #treeQueue: QueueController<TreeTask> | undefined;
  #tree: RunTree | undefined;
  /** Children that arrived before {@link start} finished (undefined once it has). */
  #early: { lineage: unknown; task: TreeTask }[] | undefined = [];
  #stopping = false;
  #everOpen = false;

  constructor(config: WorkerConfig, report: DrillWorkerSink) {
    this.config = config;
    this.#report = report;
  }

  /** Opens the ledger, binds the provider and starts the traffic. */
  async start(): Promise<void> {
    const c = this.config;
    const traits = VARIANT_TRAITS[c.variant];
    const ledger = new FileSideEffectLedger({ path: c.ledgerPath, logger: quietLogger });
    await ledger.open();
    this.#ledger = ledger;
    const remote: FlipSource = new RemoteFlipSource({
      urls: [...(traits.flagUrls ?? c.urls)],
      workerId: c.workerId,
      release: c.release,
      staleAfterMs: c.staleAfterMs,
      heartbeatMs: c.heartbeatMs,
      ...(c.token !== undefined ? { token: c.token } : {}),
      ...(c.publicKeys !== undefined ? { publicKeys: c.publicKeys } : {}),
      logger: quietLogger,
    });
    const source = new ObservedFlipSource(
      remote,
      (seq) => {
        const at = systemClock.now();
        this.#events.push({ t: 'applied', at, seq });
        this.#report.applied(seq, at);
      },
      (status, detail) => {
        const at = systemClock.now();
        if (status === 'open') this.#everOpen = true;
        this.#events.push({ t: 'status', at, status, ...(detail !== undefined ? { detail } : {}) });
        this.#report.status(status, at);
      },
    );
    const provider = new KillSwitchProvider({ source, logger: quietLogger });
    const domain = `drill-${c.workerId}`;
    await OpenFeature.setProviderAndWait(domain, provider);
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
    const observe = (name: string) =>
      new ObservedJournal(
        new FileQueueJournal({ path: c.ledgerPath.replace(/\.jsonl$/, '') + name }),
        async (records) => {
          const discards = records.filter((r) => r.type === 'discarded');
          this.counters.discarded += discards.length;
          for (const r of discards) {
            this.#events.push({ t: 'discard', at: systemClock.now(), ctx: r.context, count: 1 });
          }
          this.#tree?.discarded(discards.map((r) => r.taskId));
          await traits.onDiscard?.(discards, this.#ledger);
        },
      );
    const journal = observe('.queue-journal.jsonl');
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
    this.#traffic = new Traffic({
      config: c,
      traits,
      counters: this.counters,
      events: this.#events,
      client: this.#client,
      ledger,
      guard: this.#guard,
      scheduler: this.#scheduler,
      queue: this.#queue,
    });
    const tree = c.traffic.tree;
    if (tree !== undefined && !traits.readsOnceAtBoot) {
      // KS-9.1.6 the run tree: a second queue (child runs), the production controller over it.
      this.#treeQueue = new QueueController<TreeTask>({
        queue: new MemoryTaskQueue({ name: `drill-${c.workerId}-tree` }),
        watcher: this.#guard.watcher,
        journal: observe('.tree-journal.jsonl'),
        logger: quietLogger,
      });
      await this.#treeQueue.start();
      this.#tree = new RunTree({
        config: c,
        tree,
        traits,
        counters: this.counters,
        events: this.#events,
        guard: this.#guard,
        traffic: this.#traffic,
        queue: this.#treeQueue,
        dispatch: (to, lineage, task) => this.#report.dispatch?.(to, lineage, task),
      });
    }
    await this.#traffic.start(() => this.#everOpen);
    await this.#tree?.start();
    // Children sent before this worker's tree was up (the root's worker started first): taken now.
    const early = this.#early;
    this.#early = undefined;
    for (const c of early ?? []) await this.#tree?.accept(c.lineage, c.task);
  }

  /**
   * A run-tree child's work arrived from the worker that spawned it. Before this worker has
   * started its tree it is kept and taken once it has: the spawner sends each child once, so a
   * child dropped here would be missing from the tree for good (seen: a tree on 1 of 4 workers
   * when the root's worker started spawning before the others were fresh).
   */
  acceptChild(lineage: unknown, task: TreeTask): Promise<void> {
    if (this.#early !== undefined) {
      if (this.#early.length < 10_000) this.#early.push({ lineage, task });
      return Promise.resolve();
    }
    return this.#tree?.accept(lineage, task) ?? Promise.resolve();
  }

  /** The tool calls held open across flips (KS-9.4.3; 0 of 0 for a production worker). */
  heldCalls(): HeldCalls {
    return this.#traffic?.heldCalls() ?? { open: 0, total: 0 };
  }

  /** The run-tree runs here now (undefined without a tree). */
  treeShape(): Promise<TreeAtFlip | undefined> {
    return this.#tree?.shape() ?? Promise.resolve(undefined);
  }

  readonly #onChange = (): void => {
    if (this.#stopping) return;
    void this.#treeQueue?.resume().catch(() => undefined);
    void this.#queue.resume().then(
      (r) => {
        if (r.released > 0 || r.unpaused) {
          this.#events.push({
            t: 'status',
            at: systemClock.now(),
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
    const at = systemClock.now();
    const queues = [this.#queue, ...(this.#treeQueue ? [this.#treeQueue] : [])];
    const depths = await Promise.all(
      queues.flatMap((q) => [q.depth(), q.depth(selector)] as const),
    );
    let total = 0;
    let matching = 0;
    let held = 0;
    for (let i = 0; i < depths.length; i += 2) {
      total += depths[i]!.total;
      matching += depths[i + 1]!.total;
      held += depths[i + 1]!.held;
    }
    return { at, total, matching, held };
  }

  /** Stops the traffic, lets in-flight work settle, closes everything. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#client.removeHandler(ProviderEvents.ConfigurationChanged, this.#onChange);
    await this.#traffic.stop();
    await this.#tree?.stop();
    await this.#treeQueue?.close();
    await this.#treeQueue?.queue.close();
    await this.#treeQueue?.journal.close();
    await this.#queue.close();
    await this.#queue.queue.close();
    await this.#queue.journal.close();
    await this.#scheduler.close();
    await this.#traffic.settled();
    await this.#guard.close();
    await this.#ledger.close();
    await OpenFeature.clearProviders().catch(() => undefined);
  }
}

const quietLogger = { warn: () => undefined };
