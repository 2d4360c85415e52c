import { type CliCommand } from '../internal/command.js';
import { EXIT_HELP, REMOTE_HELP } from '../internal/remote.js';
import { SELECTOR_HELP } from '../internal/selector-flags.js';
import { DEFAULT_FLIP_WAIT_MS, runFlip } from './flip.js';

const HELP = `usage: killswitch resume (--tenant <t> | --feature <f> | --run <id> | --capability <c> | --global)
                        --reason "<why>" [--release <r> [--mark-green]] [--wait <ms>] [--id <key>]

Lifts exactly the halt with this selector (never a broader or narrower one). Needs the resume
permission; refused (exit 1) when no active halt has exactly this selector (the close ones are
listed, each with the command that lifts it). KS-5.3.3

${SELECTOR_HELP}
  --reason <text>    why (required)
  --release <r>      the release the work resumes on; killswitch serve refuses a resume that names
                     no release marked green (killswitch release <r> --green) KS-10.5.3
  --mark-green       mark --release green first (admin; recorded with --reason), then resume
  --wait <ms>        wait up to this long for the fleet, 0 to 30000 (default ${DEFAULT_FLIP_WAIT_MS})
  --id <key>         idempotency key
${REMOTE_HELP}

${EXIT_HELP}`;

/** `killswitch resume`: lift one halt. */
export const command: CliCommand = {
  name: 'resume',
  summary: 'lift exactly one halt',
  help: HELP,
  run: (argv, io) => runFlip('resume', argv, io, HELP),
};
