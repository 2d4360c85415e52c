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
  async run(client, json, io) {
    const [state, fleet] = await Promise.all([client.state(), client.workers()]);
    if (json) {
      io.stdout(JSON.stringify({ state, workers: fleet }));
      return ExitCode.OK;
    }
    const fresh = fleet.workers.filter((w) => !w.stale).length;
    const connected = fleet.workers.filter((w) => w.connected).length;
    io.stdout(
      `control plane ${client.url}: head seq ${state.seq}, ${state.halts.length} active halt(s)`,
    );
    for (const h of state.halts) {
      io.stdout(
        `  #${h.seq} ${levelOf(h.selector)} ${formatSelector(h.selector)} mode=${h.mode} by ${h.actor} at ${h.at}: ${h.reason}`,
      );
    }
    io.stdout(
      `workers: ${connected} connected, ${fresh} with a fresh lease, ${fleet.workers.length - fresh} stale`,
    );
    return ExitCode.OK;
  },
});
