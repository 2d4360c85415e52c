import { monitorEventLoopDelay } from 'node:perf_hooks';
import { systemClock } from '../../internal/clock.js';
import type { Selector } from '../../model/selector.js';
import type {
  FromWorker,
  HeldCalls,
  QueueDepth,
  ToWorker,
  TreeAtFlip,
  TreeTask,
  WorkerConfig,
  WorkerCounters,
  WorkerEvent,
} from '../internal/protocol.js';
import type { DrillWorkerSink } from './drill-worker.js';

/**
 * What a drill fleet member runs in its process: a {@link DrillWorker} or the gateway member.
 * The run-tree and queue questions are optional: a member without them (the gateway, KS-9.7)
 * answers with zeros, at once.
 */
export interface DrillMember {
  readonly counters: WorkerCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
  note(event: WorkerEvent): void;
  collect(): WorkerEvent[];
  queueDepth?(selector: Selector): Promise<QueueDepth>;
  treeShape?(): Promise<TreeAtFlip | undefined>;
  acceptChild?(lineage: unknown, task: TreeTask): Promise<void>;
  heldCalls?(): HeldCalls;
}

function send(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}

/**
 * Serves the drill's IPC protocol for one member in this process (KS-9.2.3): waits for `start`,
 * builds the member with `create`, reports each applied flip and status change at once, answers
 * the drill's questions, and exits after `stop` or when the drill goes away.
 *
 * @param name - how the process names itself in its error lines (`drill worker`)
 * @param create - builds the member from the drill's config and the sink it reports to
 */
export function serveDrillMember(
  name: string,
  create: (config: WorkerConfig, report: DrillWorkerSink) => DrillMember,
): void {
  if (typeof process.send !== 'function') {
    process.stderr.write(
      `${name}: must be started by \`killswitch drill\` (it needs an IPC channel)\n`,
    );
    process.exit(2);
  }
  // How long this member's event loop was held up: time-to-stop includes it, so the report shows it.
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  let loopSince = systemClock.now();
  let member: DrillMember | undefined;

  process.on('message', (raw: unknown) => {
    const msg = raw as ToWorker;
    switch (msg.type) {
      case 'start': {
        if (member) return;
        const { workerId } = msg.config;
        member = create(msg.config, {
          applied: (seq, at) => send({ type: 'applied', workerId, seq, at }),
          status: (status, at) => send({ type: 'status', workerId, status, at }),
          dispatch: (to, lineage, task) => send({ type: 'dispatch', to, lineage, task }),
        });
        member.start().then(
          () => send({ type: 'started', workerId, pid: process.pid }),
          (err: unknown) => {
            send({ type: 'fatal', workerId, message: String((err as Error)?.stack ?? err) });
            setTimeout(() => process.exit(1), 50);
          },
        );
        return;
      }
      case 'collect': {
        if (!member) return;
        const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
        const at = systemClock.now();
        member.note({
          t: 'loop',
          at,
          since: loopSince,
          p50: ms(loop.percentile(50)),
          p99: ms(loop.percentile(99)),
          max: ms(loop.max),
        });
        loop.reset();
        loopSince = at;
        send({
          type: 'collected',
          id: msg.id,
          events: member.collect(),
          counters: { ...member.counters },
        });
        return;
      }
      case 'queue-depth': {
        if (!member) return;
        const none: QueueDepth = { at: systemClock.now(), total: 0, matching: 0, held: 0 };
        (member.queueDepth?.(msg.selector) ?? Promise.resolve(none)).then(
          (depth) => send({ type: 'queue-depth', id: msg.id, depth }),
          () => undefined,
        );
        return;
      }
      case 'child':
        // A run-tree child's work from the member that spawned it (through the drill).
        void member?.acceptChild?.(msg.lineage, msg.task).catch(() => undefined);
        return;
      case 'tree-shape': {
        if (!member) return;
        (member.treeShape?.() ?? Promise.resolve(undefined)).then(
          (shape) =>
            send({
              type: 'tree-shape',
              id: msg.id,
              shape: shape ?? {
                at: systemClock.now(),
                running: 0,
                queued: 0,
                waiting: 0,
                grandchildren: 0,
              },
            }),
          () => undefined,
        );
        return;
      }
      case 'held-calls':
        if (!member) return;
        send({
          type: 'held-calls',
          id: msg.id,
          held: member.heldCalls?.() ?? { open: 0, total: 0 },
        });
        return;
      case 'stop': {
        const m = member;
        const finish = () => {
          send({ type: 'stopped', id: msg.id, counters: m ? { ...m.counters } : ({} as never) });
          // Let the IPC message flush before exiting.
          setTimeout(() => process.exit(0), 20);
        };
        if (!m) return finish();
        m.stop().then(finish, (err: unknown) => {
          process.stderr.write(`${name}: stop failed: ${String(err)}\n`);
          finish();
        });
        return;
      }
    }
  });

  // The drill that forked us went away: nothing would ever stop us.
  process.on('disconnect', () => process.exit(1));
}
