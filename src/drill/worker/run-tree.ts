import { ErrorCode, KillSwitchError } from '../../errors.js';
import type { EffectGuard } from '../../guard/effect-guard.js';
import { parseLineage, type Lineage } from '../../lineage/lineage.js';
import type { QueueController } from '../../queue/queue-controller.js';
import type { TaskConsumer } from '../../queue/task-queue.js';
import { currentRunScope, runInScope, scopeContext, type RunScope } from '../../scope/run-scope.js';
import { spawnChildRun } from '../../scope/spawn-child-run.js';
import { systemClock } from '../../internal/clock.js';
import type {
  TreeAtFlip,
  TreeTask,
  WorkerConfig,
  WorkerCounters,
  WorkerEvent,
} from '../internal/protocol.js';
import type { TreeShape } from '../scenario.js';
import { prng, type EffectCtx, type Traffic } from './traffic.js';
import type { VariantTraits } from './variants.js';

/** What a worker's part of the run tree runs on. */
export interface RunTreeParts {
  readonly config: WorkerConfig;
  readonly tree: TreeShape;
  readonly traits: VariantTraits;
  readonly counters: WorkerCounters;
  readonly events: WorkerEvent[];
  readonly guard: EffectGuard;
  readonly traffic: Traffic;
  /** This worker's tree queue (child runs wait here for a free slot). */
  readonly queue: QueueController<TreeTask>;
  /** Sends a child's work, with the lineage given, to another worker (or this one). */
  readonly dispatch: (to: string, lineage: unknown, task: TreeTask) => void;
}

/**
 * One worker's part of the drill's run tree (KS-9.1.6): the root run (in the root's worker) spawns
 * child runs round-robin over every worker with `spawnChildRun`, and sends each child's work with
 * the child's lineage; every worker takes the children sent to it into its tree queue (the enqueue
 * runs in the child's scope, so the task carries the lineage) and runs `concurrency` of them at
 * once: effects with retries, a follow-up timer it waits on after each, and for every `grandchildEvery`-th
 * child a worker receives a grandchild spawned onto the next worker. Nothing here knows of halts: the guard, the
 * scheduler and the queue controller stop the tree from the lineage alone.
 */
export class RunTree {
  readonly #p: RunTreeParts;
  #consumer: TaskConsumer | undefined;
  #root: Promise<void> | undefined;
  /**
   * Child run ids queued or running here, with their depth (a child sent again while live is not
   * taken twice).
   */
  readonly #live = new Map<string, number>();
  #running = 0;
  #waiting = 0;

  constructor(parts: RunTreeParts) {
    this.#p = parts;
  }

  /** Starts the tree queue's consumer, and the root run in the root's worker. */
  async start(): Promise<void> {
    const { queue, tree } = this.#p;
    this.#consumer = await queue.work((task, signal) => this.#child(task.payload, signal), {
      concurrency: tree.concurrency,
    });
    if (this.#p.config.workerId === tree.rootWorker) this.#root = this.#rootLoop();
  }

  /** Stops the root and the consumer (the traffic's stop flag ends the loops). */
  async stop(): Promise<void> {
    await this.#root?.catch(() => undefined);
    await this.#consumer?.close();
  }

  /** The queue journal discarded these tasks: they are no longer live here. */
  discarded(ids: readonly string[]): void {
    for (const id of ids) this.#live.delete(id);
  }

  /** The tree runs here now, for a run-tree lever's snapshot. */
  async shape(): Promise<TreeAtFlip> {
    const at = systemClock.now();
    const depth = await this.#p.queue.depth();
    let grandchildren = 0;
    for (const d of this.#live.values()) if (d === 3) grandchildren++;
    return {
      at,
      running: this.#running,
      queued: depth.total,
      waiting: this.#waiting,
      grandchildren,
    };
  }

  /**
   * A child's work arrived (from its spawner, through the drill): validate the lineage that came
   * with it (refused when malformed) and enqueue it in the child's scope.
   */
  async accept(rawLineage: unknown, task: TreeTask): Promise<void> {
    const { counters, events } = this.#p;
    let lineage: Lineage;
    try {
      lineage = parseLineage(rawLineage);
    } catch {
      counters.enqueueRefused++;
      return;
    }
    const id = lineage.runPath[lineage.runPath.length - 1];
    if (id === undefined || this.#live.has(id) || this.#p.traffic.stopping) return;
    this.#live.set(id, task.depth);
    try {
      // Inside the child's scope the enqueue takes the child's tenant, feature and run path.
      await runInScope(lineage, () => this.#p.queue.enqueue({}, task, { id }));
    } catch (err) {
      this.#live.delete(id);
      if (err instanceof KillSwitchError && err.code === ErrorCode.HALTED) {
        counters.enqueueRefused++;
        events.push({
          t: 'refused',
          at: systemClock.now(),
          ctx: runInScope(lineage, () => scopeContext(currentRunScope()!)),
          cause: (err as { haltCause?: string }).haltCause ?? 'halted',
          kind: 'enqueue',
        });
      }
    }
  }

  /** The root run: spawns its children, then works; spawns them again after a lifted halt. */
  async #rootLoop(): Promise<void> {
    const { config: c, tree, traffic } = this.#p;
    const t = c.traffic;
    const root = parseLineage({
      tenant: t.tenants[0],
      feature: t.features[0],
      runPath: [tree.rootRunId],
    });
    const base = { tenant: t.tenants[0]!, feature: t.features[0]!, runId: tree.rootRunId };
    const ctxOf = (capability: string): EffectCtx => ({
      ...base,
      runPath: root.runPath,
      capability,
    });
    const random = prng(c.seed * 31 + 7);
    let epoch = 0;
    let spawned = false;
    let n = 0;
    while (!traffic.stopping) {
      // A run-level check through the slow LLM call: halted means this whole tree is halted.
      if ((await traffic.llm({ ...base, runPath: root.runPath })) === 'halted') {
        spawned = false;
        await traffic.sleep(t.parkMs);
        continue;
      }
      if (!spawned) {
        spawned = await this.#spawnAll(root, epoch);
        if (spawned) epoch++;
      }
      const capability = t.capabilities[n % t.capabilities.length]!;
      const outcome = await traffic.effect(
        ctxOf(capability),
        `s${n}`,
        'run',
        random() < t.failureRate,
      );
      n++;
      await traffic.sleep(outcome === 'landed' ? t.stepPauseMs : t.parkMs);
    }
  }

  /**
   * Spawns every child of the root at once (a fan-out); false when a halt refused one (they are
   * all spawned again later: the ones already out are not taken twice).
   */
  async #spawnAll(root: Lineage, epoch: number): Promise<boolean> {
    const { tree, config } = this.#p;
    const fleet = config.fleet ?? [config.workerId];
    const spawns = Array.from({ length: tree.children }, (_, i) =>
      this.#spawn(root, { step: `c${i}`, depth: 2, index: i, epoch }, fleet[i % fleet.length]!),
    );
    return (await Promise.all(spawns)).every(Boolean);
  }

  /** Spawns one child of `parent` (a guarded effect) and sends its work to `to`. */
  async #spawn(parent: Lineage, task: TreeTask, to: string): Promise<boolean> {
    const { guard, traits, counters, events } = this.#p;
    try {
      await spawnChildRun(
        guard,
        task.step,
        (child) => {
          // The drops-lineage control sends the child's work with the child alone as its path.
          const lineage = traits.dropsLineage
            ? {
                ...(child.lineage.tenant !== undefined ? { tenant: child.lineage.tenant } : {}),
                ...(child.lineage.feature !== undefined ? { feature: child.lineage.feature } : {}),
                runPath: [child.runId],
              }
            : child.lineage;
          this.#p.dispatch(to, lineage, task);
          counters.childrenSpawned++;
          events.push({
            t: 'spawn',
            at: systemClock.now(),
            parentPath: parent.runPath,
            childId: child.runId,
            to,
          });
        },
        { parent },
      );
      return true;
    } catch (err) {
      if (err instanceof KillSwitchError) {
        counters.spawnsRefused++;
        return false;
      }
      throw err;
    }
  }

  /** A child run, in its own scope (the queue controller entered it from the task's lineage). */
  async #child(task: TreeTask, signal: AbortSignal): Promise<void> {
    const scope = currentRunScope();
    if (scope === undefined) return;
    const { config: c, tree, counters, events } = this.#p;
    this.#running++;
    counters.childrenStarted++;
    events.push({ t: 'child-start', at: systemClock.now(), ctx: scopeContext(scope) });
    try {
      const fleet = c.fleet ?? [c.workerId];
      // Every n-th child each worker receives (its round of the root's round-robin).
      const round = Math.floor(task.index / fleet.length);
      if (task.depth === 2 && tree.grandchildEvery > 0 && round % tree.grandchildEvery === 0) {
        const next = fleet[(fleet.indexOf(c.workerId) + 1) % fleet.length]!;
        await this.#spawn(
          scope.lineage,
          { step: `g${task.index}`, depth: 3, index: task.index, epoch: task.epoch },
          next,
        );
      }
      await this.#work(scope, task, signal);
    } finally {
      this.#running--;
      this.#live.delete(scope.runId);
    }
  }

  async #work(scope: RunScope, task: TreeTask, signal: AbortSignal): Promise<void> {
    const { config: c, traffic } = this.#p;
    const t = c.traffic;
    const base = scopeContext(scope);
    const random = prng(c.seed * 7919 + task.index * 104729 + task.depth + task.epoch * 13);
    const backoff = (d: 1 | -1) => (this.#waiting += d);
    let n = 0;
    while (!signal.aborted && !traffic.stopping) {
      const capability = t.capabilities[(n + task.index) % t.capabilities.length]!;
      const ctx = { ...base, runId: scope.runId, capability };
      const step = `e${task.epoch}-s${n}`;
      n++;
      const outcome = await traffic.effect(ctx, step, 'tree', random() < t.failureRate, backoff);
      if (outcome !== 'landed') {
        if (signal.aborted) return;
        await traffic.sleep(t.parkMs);
        continue;
      }
      // After each effect the child waits on its follow-up timer (a halt cancels the timer), as an
      // agent polling for a reply does: most of the tree is waiting at any moment.
      this.#waiting++;
      try {
        await traffic.timer(ctx, `${step}-timer`, this.#p.tree.followUpMs);
      } finally {
        this.#waiting--;
      }
    }
  }
}
