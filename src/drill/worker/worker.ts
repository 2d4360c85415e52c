/**
 * Entry point of a drill worker process (`dist/src/drill/worker.js`), forked by the drill with an
 * IPC channel. It waits for a `start` message carrying its {@link WorkerConfig}, runs the
 * synthetic traffic, reports each applied flip at once and everything else when asked, and
 * exits after `stop`. `--variant <name>` plants a negative-control bug (test-only). KS-9.2.3
 */
import { DrillWorker } from './drill-worker.js';
import { serveDrillMember } from './member-process.js';
import { WORKER_VARIANTS, type WorkerVariant } from '../internal/protocol.js';

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

const argvVariant = variantFromArgv(process.argv.slice(2));
serveDrillMember(
  'drill worker',
  (config, report) =>
    new DrillWorker({ ...config, ...(argvVariant ? { variant: argvVariant } : {}) }, report),
);
