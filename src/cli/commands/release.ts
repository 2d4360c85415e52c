import { parseArgs } from 'node:util';
import type { ReleaseRecord } from '../../server/release-gate.js';
import { ExitCode, type CliCommand } from '../internal/command.js';
import {
  EXIT_HELP,
  REMOTE_HELP,
  REMOTE_OPTIONS,
  UsageError,
  clientFrom,
  reportError,
} from '../internal/remote.js';

const HELP = `usage: killswitch release <name> (--green | --red) [--reason "<why>"]
       killswitch release            (lists every release's latest verdict and the workers)

Records a verdict on a release (needs the admin role). A resume must name a release
(killswitch resume --release <name>) and is refused while that release is not green, or while any
connected worker reports a release marked red. KS-10.5.7

  --green            the release is good: resumes may name it
  --red              the release is bad: no resume while a connected worker runs it
  --reason <text>    why (recorded with the verdict)
${REMOTE_HELP}

${EXIT_HELP}`;

/** `killswitch release`: mark a release green or red, or list verdicts. KS-10.5.7 */
export const command: CliCommand = {
  name: 'release',
  summary: 'mark a release green or red (resumes are gated on it), or list releases',
  help: HELP,
  async run(argv, io) {
    let values;
    let name: string | undefined;
    let status: 'green' | 'red' | undefined;
    try {
      const parsed = parseArgs({
        args: [...argv],
        options: {
          ...REMOTE_OPTIONS,
          green: { type: 'boolean', default: false },
          red: { type: 'boolean', default: false },
          reason: { type: 'string' },
        },
        strict: true,
        allowPositionals: true,
      });
      values = parsed.values;
      if (parsed.positionals.length > 1) throw new UsageError('name one release');
      name = parsed.positionals[0];
      if (values.green && values.red) throw new UsageError('--green or --red, not both');
      status = values.green ? 'green' : values.red ? 'red' : undefined;
      if (name !== undefined && status === undefined) throw new UsageError('say --green or --red');
      if (name === undefined && (status !== undefined || values.reason !== undefined))
        throw new UsageError('name the release: killswitch release <name> --green|--red');
      if (values.reason !== undefined && values.reason.trim() === '')
        throw new UsageError('--reason must not be empty');
    } catch (err) {
      io.stderr(`killswitch release: ${(err as Error).message}\n\n${HELP}`);
      return ExitCode.USAGE;
    }
    try {
      const client = await clientFrom(values, io);
      if (name !== undefined && status !== undefined) {
        const answer = await client.markRelease({
          release: name,
          status,
          ...(values.reason !== undefined ? { reason: values.reason } : {}),
        });
        if (values.json === true) io.stdout(JSON.stringify(answer));
        else io.stdout(`release ${line(answer.release)}`);
        return ExitCode.OK;
      }
      const list = await client.releases();
      if (values.json === true) {
        io.stdout(JSON.stringify(list));
        return ExitCode.OK;
      }
      if (list.releases.length === 0) io.stdout('no release verdicts yet');
      for (const r of list.releases) io.stdout(line(r));
      const verdict = new Map(list.releases.map((r) => [r.release, r.status]));
      io.stdout(`connected workers: ${list.workers.length}`);
      for (const w of list.workers) {
        const v =
          w.release === null ? 'no release reported' : (verdict.get(w.release) ?? 'no verdict');
        io.stdout(`  ${w.id} ${w.release ?? '-'} (${v})`);
      }
      return ExitCode.OK;
    } catch (err) {
      return reportError('release', err, io);
    }
  },
};

function line(r: ReleaseRecord): string {
  return `${r.release} ${r.status.toUpperCase()} (#${r.seq} ${r.at} by ${r.actor}${r.reason ? `: ${r.reason}` : ''})`;
}
