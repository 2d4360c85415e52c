import { ExitCode, type CliCommand } from '../internal/command.js';
import { escapeText } from '../internal/escape-text.js';
import { EXIT_HELP, REMOTE_HELP, remoteOnlyCommand } from '../internal/remote.js';

const HELP = `usage: killswitch workers [--json]

Lists the workers the control plane knows: id, release, connected, last acknowledged seq, lag
behind the head, lease expiry, and whether the lease ran out (stale: the worker fails closed).

${REMOTE_HELP}

${EXIT_HELP}`;

/** `killswitch workers`: the fleet as the control plane sees it. */
export const command: CliCommand = remoteOnlyCommand({
  name: 'workers',
  summary: 'list connected workers, their acknowledged seq, lag and lease',
  help: HELP,
  async run(client, out) {
    const answer = await client.workers();
    if (out.json) {
      out.data(answer);
      return ExitCode.OK;
    }
    out.line(
      `head seq ${answer.head}, lease ${answer.staleAfterMs} ms + ${answer.leaseMarginMs} ms margin`,
    );
    if (answer.workers.length === 0) out.line('(no workers)');
    // Escaped before padding, so the columns line up whatever a worker id holds.
    const rows = answer.workers.map((w) => [
      escapeText(w.id),
      escapeText(w.release ?? '-'),
      w.connected ? `yes (${w.connections})` : 'no',
      w.lastAckSeq === null ? '-' : String(w.lastAckSeq),
      w.lag === null ? '-' : String(w.lag),
      escapeText(w.leaseExpiresAt ?? '-'),
      w.stale ? 'STALE' : 'fresh',
    ]);
    if (rows.length > 0) {
      const head = ['WORKER', 'RELEASE', 'CONNECTED', 'ACKED', 'LAG', 'LEASE UNTIL', 'STATE'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      for (const r of [head, ...rows])
        out.io.stdout(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd(),
        );
    }
    return ExitCode.OK;
  },
});
