/**
 * Entry point of a drill worker process (`dist/src/drill/worker.js`), forked by the drill with an
 * IPC channel. It waits for a `start` message carrying its {@link WorkerConfig}, runs the
 * synthetic traffic, reports each applied flip at once and everything else when asked, and
 * exits after `stop`. `--variant <name>` plants a negative-control bug (test-only). KS-9.2.3
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { systemClock } from '../../internal/clock.js';
import { DrillWorker } from './drill-worker.js';
import {
  WORKER_VARIANTS,
  type FromWorker,
  type ToWorker,
  type WorkerVariant,
} from '../internal/protocol.js';

function send(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}

function variantFromArgv(argv: readonly string[]): WorkerVariant | undefined {
  const i = argv.indexOf('--variant');
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (!WORKER_VARIANTS.includes(v as WorkerVariant)) {
    process.stderr.write(
      `drill worker: unknown --variant ${String(v)} (one of ${WORKER_VARIANTS.join(', ')})\n`,
    );
    process.exit(2);
  }
  return v as WorkerVariant;
}

if (typeof process.send !== 'function') {
  process.stderr.write(
    'drill worker: must be started by `killswitch drill` (it needs an IPC channel)\n',
  );
  process.exit(2);
}

const argvVariant = variantFromArgv(process.argv.slice(2));
// How long this worker's event loop was held up: time-to-stop includes it, so the report shows it.
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
let worker: DrillWorker | undefined;

process.on('message', (raw: unknown) => {
  const msg = raw as ToWorker;
  switch (msg.type) {
    case 'start': {
      if (worker) return;
      const config = { ...msg.config, ...(argvVariant ? { variant: argvVariant } : {}) };
      worker = new DrillWorker(config, {
        applied: (seq, at) => send({ type: 'applied', workerId: config.workerId, seq, at }),
        status: (status, at) => send({ type: 'status', workerId: config.workerId, status, at }),
        dispatch: (to, lineage, task) => send({ type: 'dispatch', to, lineage, task }),
      });
      worker.start().then(
        () => send({ type: 'started', workerId: config.workerId, pid: process.pid }),
        (err: unknown) => {
          send({
            type: 'fatal',
            workerId: config.workerId,
            message: String((err as Error)?.stack ?? err),
          });
          setTimeout(() => process.exit(1), 50);
        },
      );
      return;
    }
    case 'collect': {
      if (!worker) return;
      const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
      worker.note({
        t: 'loop',
        at: systemClock.now(),
        p50: ms(loop.percentile(50)),
        p99: ms(loop.percentile(99)),
        max: ms(loop.max),
      });
      loop.reset();
      send({
        type: 'collected',
        id: msg.id,
        events: worker.collect(),
        counters: { ...worker.counters },
      });
      return;
    }
    case 'queue-depth': {
      if (!worker) return;
      worker.queueDepth(msg.selector).then(
        (depth) => send({ type: 'queue-depth', id: msg.id, depth }),
        () => undefined,
      );
      return;
    }
    case 'child': {
      // A run-tree child's work from the worker that spawned it (through the drill).
      void worker?.acceptChild(msg.lineage, msg.task).catch(() => undefined);
      return;
    }
    case 'tree-shape': {
      if (!worker) return;
      worker.treeShape().then(
        (shape) =>
          send({
            type: 'tree-shape',
            id: msg.id,
            shape: shape ?? { at: systemClock.now(), running: 0, queued: 0, waiting: 0 },
          }),
        () => undefined,
      );
      return;
    }
    case 'held-calls': {
      if (!worker) return;
      send({ type: 'held-calls', id: msg.id, held: worker.heldCalls() });
      return;
    }
    case 'stop': {
      const w = worker;
      const finish = () => {
        send({ type: 'stopped', id: msg.id, counters: w ? { ...w.counters } : ({} as never) });
        // Let the IPC message flush before exiting.
        setTimeout(() => process.exit(0), 20);
      };
      if (!w) return finish();
      w.stop().then(finish, (err: unknown) => {
        process.stderr.write(`drill worker: stop failed: ${String(err)}\n`);
        finish();
      });
      return;
    }
  }
});

// The drill that forked us went away: nothing would ever stop us.
process.on('disconnect', () => process.exit(1));
