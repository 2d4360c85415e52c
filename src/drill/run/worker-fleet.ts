import { fork, type ChildProcess } from 'node:child_process';
import type { Selector } from '../../model/selector.js';
import type {
  FromWorker,
  QueueDepth,
  TreeAtFlip,
  HeldCalls,
  ToWorker,
  WorkerConfig,
  WorkerCounters,
  WorkerEvent,
} from '../internal/protocol.js';

/** One forked worker process and what it reported. */
export interface FleetMember {
  readonly workerId: string;
  readonly variant: string;
  readonly child: ChildProcess;
  /** Every event collected so far, in order. */
  readonly events: WorkerEvent[];
  counters?: WorkerCounters;
  started: boolean;
  fatal?: string;
  exited: boolean;
  /** It exited before the drill asked it to stop (a crash): its events since the last collect are lost. */
  exitedEarly?: { code: number | null; signal: string | null };
  stopRequested: boolean;
  /** Last lines of its stderr, for diagnostics. */
  stderr: string;
}

type Pending = { resolve: (m: FromWorker) => void; timer: NodeJS.Timeout };

/**
 * The drill's worker processes: forks `worker.js` with an IPC channel, sends each its config,
 * and asks them (collect, queue depth, stop) with request ids and timeouts, so a worker that
 * hangs is noticed instead of hanging the drill.
 */
export class WorkerFleet {
  readonly members: FleetMember[] = [];
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  readonly #onApplied: (workerId: string, seq: number, at: number) => void;

  constructor(onApplied: (workerId: string, seq: number, at: number) => void = () => undefined) {
    this.#onApplied = onApplied;
  }

  /** Forks one worker and sends it its config. */
  spawn(script: string, config: WorkerConfig): FleetMember {
    const args = config.variant !== 'normal' ? ['--variant', config.variant] : [];
    const child = fork(script, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
    const m: FleetMember = {
      workerId: config.workerId,
      variant: config.variant,
      child,
      events: [],
      started: false,
      exited: false,
      stopRequested: false,
      stderr: '',
    };
    child.stderr?.on('data', (b: Buffer) => {
      m.stderr = (m.stderr + b.toString('utf8')).slice(-4000);
    });
    child.on('exit', (code, signal) => {
      m.exited = true;
      if (!m.stopRequested) m.exitedEarly = { code, signal };
    });
    child.on('message', (raw: unknown) => this.#onMessage(m, raw as FromWorker));
    child.send({ type: 'start', config } satisfies ToWorker);
    this.members.push(m);
    return m;
  }

  #onMessage(m: FleetMember, msg: FromWorker): void {
    switch (msg.type) {
      case 'started':
        m.started = true;
        return;
      case 'fatal':
        m.fatal = msg.message;
        return;
      case 'applied':
        this.#onApplied(msg.workerId, msg.seq, msg.at);
        return;
      case 'status':
        return;
      case 'dispatch': {
        // KS-9.1.6 a run-tree child's work goes to its worker with the lineage as it was sent.
        const to = this.members.find((x) => x.workerId === msg.to);
        if (to && !to.exited && to.child.connected) {
          try {
            to.child.send({
              type: 'child',
              lineage: msg.lineage,
              task: msg.task,
            } satisfies ToWorker);
          } catch {
            // the target is gone: its child is lost with it
          }
        }
        return;
      }
      case 'collected':
      case 'tree-shape':
      case 'held-calls':
      case 'queue-depth':
      case 'stopped': {
        const p = this.#pending.get(msg.id);
        if (p) {
          clearTimeout(p.timer);
          this.#pending.delete(msg.id);
          p.resolve(msg);
        }
        return;
      }
    }
  }

  #ask(
    m: FleetMember,
    make: (id: number) => ToWorker,
    timeoutMs: number,
  ): Promise<FromWorker | undefined> {
    if (m.exited || !m.child.connected) return Promise.resolve(undefined);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.#pending.set(id, { resolve, timer });
      try {
        m.child.send(make(id));
      } catch {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(undefined);
      }
    });
  }

  /** Collects every worker's new events into its member record. */
  async collect(timeoutMs = 5_000): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        const r = await this.#ask(m, (id) => ({ type: 'collect', id }), timeoutMs);
        if (r?.type === 'collected') {
          m.events.push(...r.events);
          m.counters = r.counters;
        }
      }),
    );
  }

  /** Queue depth of every worker for a selector (undefined for a worker that did not answer). */
  async queueDepth(
    selector: Selector,
    timeoutMs = 2_000,
  ): Promise<(QueueDepth & { workerId: string })[]> {
    const out = await Promise.all(
      this.members.map(async (m) => {
        const r = await this.#ask(m, (id) => ({ type: 'queue-depth', id, selector }), timeoutMs);
        return r?.type === 'queue-depth' ? { ...r.depth, workerId: m.workerId } : undefined;
      }),
    );
    return out.filter((x): x is QueueDepth & { workerId: string } => x !== undefined);
  }

  /** Every worker's run-tree runs now (a worker that did not answer is left out). */
  async treeShape(timeoutMs = 2_000): Promise<(TreeAtFlip & { workerId: string })[]> {
    const out = await Promise.all(
      this.members.map(async (m) => {
        const r = await this.#ask(m, (id) => ({ type: 'tree-shape', id }), timeoutMs);
        return r?.type === 'tree-shape' ? { ...r.shape, workerId: m.workerId } : undefined;
      }),
    );
    return out.filter((x): x is TreeAtFlip & { workerId: string } => x !== undefined);
  }

  /** Every worker's held tool calls (KS-9.4.3; a worker that did not answer is left out). */
  async heldCalls(timeoutMs = 2_000): Promise<(HeldCalls & { workerId: string })[]> {
    const out = await Promise.all(
      this.members.map(async (m) => {
        const r = await this.#ask(m, (id) => ({ type: 'held-calls', id }), timeoutMs);
        return r?.type === 'held-calls' ? { ...r.held, workerId: m.workerId } : undefined;
      }),
    );
    return out.filter((x): x is HeldCalls & { workerId: string } => x !== undefined);
  }

  /** Stops every worker gracefully; a worker that does not exit in time is killed. */
  async stop(timeoutMs = 15_000): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        m.stopRequested = true;
        const r = await this.#ask(m, (id) => ({ type: 'stop', id }), timeoutMs);
        if (r?.type === 'stopped') m.counters = r.counters;
        await waitExit(m, 3_000);
      }),
    );
  }

  /** Kills every worker still running (by its pid). */
  kill(): void {
    for (const m of this.members) {
      m.stopRequested = true;
      if (!m.exited) m.child.kill('SIGKILL');
    }
  }
}

function waitExit(m: FleetMember, ms: number): Promise<void> {
  if (m.exited) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (!m.exited) m.child.kill('SIGKILL');
      resolve();
    }, ms);
    m.child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
