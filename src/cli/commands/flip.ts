import { parseArgs } from 'node:util';
import {
  ControlPlaneError,
  type ControlPlaneClient,
  type FlipRequestInput,
} from '../../client/control-plane-client.js';
import { ErrorCode } from '../../errors.js';
import {
  formatSelector,
  haltCoverage,
  selectorEquals,
  type Selector,
} from '../../model/selector.js';
import type { FlipAnswer } from '../../protocol/answers.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import {
  closeHalts,
  formatFleet,
  matchedNothingWarning,
  formatFlipLine,
  selectorFlags,
  shellWord,
} from '../internal/format.js';
import { CommandOutput, type CliFailure } from '../internal/output.js';
import {
  EXIT_HELP,
  REMOTE_HELP,
  REMOTE_OPTIONS,
  UsageError,
  failureOf,
  intFlag,
  remoteFrom,
  type Remote,
} from '../internal/remote.js';
import { SELECTOR_HELP, SELECTOR_OPTIONS, selectorFromFlags } from '../internal/selector-flags.js';

/** How long `flip` waits for the fleet by default: past a default lease (3000 + 100 ms). */
export const DEFAULT_FLIP_WAIT_MS = 5000;

const HELP = `usage: killswitch flip (--tenant <t> | --feature <f> | --run <id> | --capability <c> | --global)
                      --reason "<why>" [--mode discard|hold|drain] [--wait <ms>] [--id <key>]

Halts matching work and waits for the fleet: prints the flip, the workers that acknowledged it,
the laggards, the time until the stop was complete (every worker acknowledged or its lease
ran out), and the command that undoes it. KS-5.3.3

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
  _help: string,
): Promise<number> {
  const name = action === 'halt' ? 'flip' : 'resume';
  const out = new CommandOutput(name, io, argv.includes('--json'));
  const options = {
    ...SELECTOR_OPTIONS,
    ...REMOTE_OPTIONS,
    reason: { type: 'string' as const },
    wait: { type: 'string' as const },
    id: { type: 'string' as const },
    ...(action === 'halt'
      ? { mode: { type: 'string' as const } }
      : {
          release: { type: 'string' as const },
          'mark-green': { type: 'boolean' as const, default: false },
        }),
  };
  let request: FlipRequestInput;
  let markGreen = false;
  let values: { json?: boolean; url?: string; token?: string; 'data-dir'?: string };
  try {
    const parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
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
    markGreen = v['mark-green'] === true;
    if (markGreen && typeof v['release'] !== 'string')
      throw new UsageError('--mark-green needs --release <release>');
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
    return out.usage(err, Object.keys(options));
  }
  const remote = await remoteFrom(values, io);
  if (markGreen && request.release !== undefined) {
    try {
      const r = await remote.client.markRelease({
        release: request.release,
        status: 'green',
        reason: request.reason,
      });
      if (!out.json) out.line(`release ${r.release.release} marked green (#${r.release.seq})`);
    } catch (err) {
      const f = failureOf(err, remote.token);
      return out.fail({
        ...f,
        message: `${f.message} (marking release ${request.release} green; nothing was resumed)`,
      });
    }
  }
  let answer: FlipAnswer;
  try {
    answer = await remote.client.flip(request);
  } catch (err) {
    const failure = failureOf(err, remote.token);
    if (
      action === 'resume' &&
      err instanceof ControlPlaneError &&
      err.code === ErrorCode.RESUME_REFUSED
    ) {
      return out.fail(await explainResumeRefusal(remote, request, failure));
    }
    return out.fail(failure);
  }
  if (out.json) {
    out.data(answer);
    return ExitCode.OK;
  }
  const verb = action === 'halt' ? 'halted' : 'resumed';
  out.line(
    `${answer.duplicate ? `already ${verb} (same id)` : verb} ${formatSelector(answer.flip.selector)}`,
  );
  // KS-1.5.6 say what the halt covers: a run halt reaches every run it spawned.
  if (action === 'halt') out.line(`covers: ${answer.covers ?? haltCoverage(answer.flip.selector)}`);
  if (action === 'halt' && Object.keys(answer.flip.selector).length === 0)
    out.line('EVERYTHING IS HALTED: every worker refuses every effect until this halt is resumed');
  out.line(formatFlipLine(answer.flip));
  for (const line of formatFleet(answer.fleet, action)) out.line(line);
  const nothing =
    action === 'halt' ? matchedNothingWarning(answer.fleet, answer.flip.selector) : undefined;
  if (nothing !== undefined) out.line(nothing);
  if (action === 'halt') {
    for (const line of await undoLines(remote.client, answer.flip.selector)) out.line(line);
  }
  return ExitCode.OK;
}

/**
 * The one command that lifts a halt just made (KS-5.3.14): a resume of exactly its selector,
 * naming the release the fleet runs when the control plane gates resumes on releases, with
 * `--mark-green` when that release has no verdict yet. Best effort: a control plane that cannot
 * say leaves a placeholder.
 */
async function undoLines(client: ControlPlaneClient, selector: Selector): Promise<string[]> {
  const base = `killswitch resume ${selectorFlags(selector)} --reason "<why>"`;
  const gate = await releaseHint(client);
  if (gate === undefined) return [`undo: ${base}`];
  if (gate.release === undefined) {
    return [
      `undo: ${base} --release <release> --mark-green`,
      `  (resumes name a release marked green${gate.note ? `; ${gate.note}` : ''}; killswitch release lists them)`,
    ];
  }
  const r = shellWord(gate.release);
  if (gate.status === 'green') return [`undo: ${base} --release ${r}`];
  if (gate.status === 'red') {
    return [
      `undo: ${base} --release <a green release>`,
      `  (the fleet runs ${gate.release}, marked red: killswitch release lists the verdicts)`,
    ];
  }
  return [`undo: ${base} --release ${r} --mark-green`];
}

/** The release a resume should name: the one every connected worker reports, and its verdict. */
async function releaseHint(
  client: ControlPlaneClient,
): Promise<{ release?: string; status?: string; note?: string } | undefined> {
  let answer;
  try {
    answer = await client.releases();
  } catch (err) {
    // No release gate on this control plane (404): resumes are not gated.
    if (err instanceof ControlPlaneError && (err.status === 404 || err.status === 405))
      return undefined;
    return {};
  }
  const running = [...new Set(answer.workers.flatMap((w) => (w.release ? [w.release] : [])))];
  if (running.length !== 1)
    return running.length > 1 ? { note: `workers run ${running.join(', ')}` } : {};
  const release = running[0]!;
  const verdict = answer.releases.find((r) => r.release === release);
  return { release, ...(verdict !== undefined ? { status: verdict.status } : {}) };
}

/**
 * Why a resume was refused, and the command that gets it through (KS-5.3.13): no active halt has
 * exactly this selector (the close ones are listed, each with its resume command), or the
 * release gate refused (the command that marks the release green is named).
 */
async function explainResumeRefusal(
  remote: Remote,
  request: FlipRequestInput,
  failure: CliFailure,
): Promise<CliFailure> {
  const hints = [...(failure.hints ?? [])];
  try {
    const state = await remote.client.state();
    const exact = state.halts.some((h) => selectorEquals(h.selector, request.selector));
    if (!exact) {
      const close = closeHalts(request.selector, state.halts);
      if (state.halts.length === 0) hints.push('no halt is active');
      else if (close.length === 0)
        hints.push(
          `none of the ${state.halts.length} active halt(s) is close (killswitch status lists them)`,
        );
      else hints.push('active halts close to it (a resume lifts exactly one selector):');
      for (const h of close.slice(0, 10)) {
        hints.push(
          `  #${h.seq} ${formatSelector(h.selector)}: killswitch resume ${selectorFlags(h.selector)} --reason "<why>"${request.release !== undefined ? ` --release ${shellWord(request.release)}` : ''}`,
        );
      }
      if (close.length > 10) hints.push(`  and ${close.length - 10} more (killswitch status)`);
      return { ...failure, hints };
    }
    // The release gate refused: name the release and the command that marks it green.
    const gate = await releaseHint(remote.client);
    const named = request.release ?? gate?.release;
    const list = named === undefined ? undefined : await remote.client.releases();
    if (list?.releases.some((r) => r.release === named && r.status === 'green')) {
      hints.push('a connected worker runs a release marked red (killswitch release lists them)');
      return { ...failure, hints };
    }
    const release = shellWord(named ?? '<release>');
    hints.push(
      `mark the release green (admin): killswitch release ${release} --green --reason "<why>"`,
      `or in one step: killswitch resume ${selectorFlags(request.selector)} --release ${release} --mark-green --reason "<why>"`,
    );
  } catch {
    // The refusal itself is the answer; the hints are best effort.
  }
  return { ...failure, hints };
}

/** `killswitch flip`: halt a tenant, feature, run, capability, or everything. KS-5.3.3 */
export const command: CliCommand = {
  name: 'flip',
  summary: 'halt matching work and wait for the fleet to stop',
  help: HELP,
  run: (argv, io) => runFlip('halt', argv, io, HELP),
};
