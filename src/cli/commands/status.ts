import { formatSelector, levelOf } from '../../model/selector.js';
import { ExitCode, type CliCommand } from '../internal/command.js';
import { EXIT_HELP, REMOTE_HELP, remoteOnlyCommand } from '../internal/remote.js';

const HELP = `usage: killswitch status [--json]

Prints the head of the flip log, every active halt, and how many workers are connected and fresh.

${REMOTE_HELP}

${EXIT_HELP}`;

/** `killswitch status`: active halts and the fleet at a glance. */
export const command: CliCommand = remoteOnlyCommand({
  name: 'status',
  summary: 'active halts and the fleet at a glance',
  help: HELP,
  async run(client, out) {
    const [state, fleet] = await Promise.all([client.state(), client.workers()]);
    if (out.json) {
      out.data({ state, workers: fleet });
      return ExitCode.OK;
    }
    const fresh = fleet.workers.filter((w) => !w.stale).length;
    const connected = fleet.workers.filter((w) => w.connected).length;
    out.line(
      `control plane ${client.url}: head seq ${state.seq}, ${state.halts.length} active halt(s)`,
    );
    const global = state.halts.find((h) => Object.keys(h.selector).length === 0);
    if (global !== undefined) {
      out.line(
        `EVERYTHING IS HALTED by #${global.seq} (${global.actor}: ${global.reason}); lift it with: killswitch resume --global --reason "<why>"`,
      );
    }
    for (const h of state.halts) {
      out.line(
        `  #${h.seq} ${levelOf(h.selector)} ${formatSelector(h.selector)} mode=${h.mode} by ${h.actor} at ${h.at}: ${h.reason}`,
      );
    }
    out.line(
      `workers: ${connected} connected, ${fresh} with a fresh lease, ${fleet.workers.length - fresh} stale`,
    );
    return ExitCode.OK;
  },
});
