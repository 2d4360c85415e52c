import { parseArgs } from 'node:util';
import type { FlipRequestInput } from '../../client/control-plane-client.js';
import { formatSelector } from '../../model/selector.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { formatFleet, formatFlipLine } from '../internal/format.js';
import {
  EXIT_HELP,
  REMOTE_HELP,
  REMOTE_OPTIONS,
  UsageError,
  clientFrom,
  intFlag,
  reportError,
} from '../internal/remote.js';
import { SELECTOR_HELP, SELECTOR_OPTIONS, selectorFromFlags } from '../internal/selector-flags.js';

/** How long `flip` waits for the fleet by default: past a default lease (3000 + 100 ms). */
export const DEFAULT_FLIP_WAIT_MS = 5000;

const HELP = `usage: killswitch flip (--tenant <t> | --feature <f> | --run <id> | --capability <c> | --global)
                      --reason "<why>" [--mode discard|hold|drain] [--wait <ms>] [--id <key>]

Halts matching work and waits for the fleet: prints the flip, the workers that acknowledged it,
the laggards, and the time until the stop was complete (every worker acknowledged or its lease
ran out). KS-5.3.3

${SELECTOR_HELP}
  --reason <text>    why (required; recorded in the flip log)
  --mode <m>         queued work: discard (default), hold, or drain
  --wait <ms>        wait up to this long for the fleet, 0 to 30000 (default ${DEFAULT_FLIP_WAIT_MS})
  --id <key>         idempotency key: retrying with the same id is the same flip
${REMOTE_HELP}

${EXIT_HELP}`;

/**
 * Shared by `flip` and `resume`: parses flags, posts the flip, prints the answer.
 */
export async function runFlip(
  action: 'halt' | 'resume',
  argv: readonly string[],
  io: CliIo,
  help: string,
): Promise<number> {
  const name = action === 'halt' ? 'flip' : 'resume';
  let request: FlipRequestInput;
  let values: { json?: boolean; url?: string; token?: string; 'data-dir'?: string };
  try {
    const parsed = parseArgs({
      args: [...argv],
      options: {
        ...SELECTOR_OPTIONS,
        ...REMOTE_OPTIONS,
        reason: { type: 'string' },
        wait: { type: 'string' },
        id: { type: 'string' },
        ...(action === 'halt' ? { mode: { type: 'string' } } : { release: { type: 'string' } }),
      },
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values;
    const v = parsed.values as Record<string, string | boolean | undefined>;
    const selector = selectorFromFlags(parsed.values);
    const reason = v['reason'];
    if (typeof reason !== 'string' || reason.trim() === '')
      throw new UsageError('--reason "<why>" is required');
    const mode = v['mode'];
    if (mode !== undefined && mode !== 'discard' && mode !== 'hold' && mode !== 'drain') {
      throw new UsageError('--mode must be discard, hold or drain');
    }
    const wait = intFlag('wait', v['wait'] as string | undefined, 30_000) ?? DEFAULT_FLIP_WAIT_MS;
    request = {
      action,
      selector,
      reason,
      wait,
      ...(typeof mode === 'string' ? { mode } : {}),
      ...(typeof v['id'] === 'string' ? { id: v['id'] } : {}),
      ...(typeof v['release'] === 'string' ? { release: v['release'] } : {}),
    };
  } catch (err) {
    io.stderr(`killswitch ${name}: ${(err as Error).message}\n\n${help}`);
    return ExitCode.USAGE;
  }
  try {
    const client = await clientFrom(values, io);
    const answer = await client.flip(request);
    if (values.json === true) {
      io.stdout(JSON.stringify(answer));
      return ExitCode.OK;
    }
    const verb = action === 'halt' ? 'halted' : 'resumed';
    io.stdout(
      `${answer.duplicate ? `already ${verb} (same id)` : verb} ${formatSelector(answer.flip.selector)}`,
    );
    io.stdout(formatFlipLine(answer.flip));
    for (const line of formatFleet(answer.fleet)) io.stdout(line);
    return ExitCode.OK;
  } catch (err) {
    return reportError(name, err, io);
  }
}

/** `killswitch flip`: halt a tenant, feature, run, capability, or everything. KS-5.3.3 */
export const command: CliCommand = {
  name: 'flip',
  summary: 'halt matching work and wait for the fleet to stop',
  help: HELP,
  run: (argv, io) => runFlip('halt', argv, io, HELP),
};
