import { parseArgs } from 'node:util';
import type { ReleaseRecord } from '../../server/release-gate.js';
import { ExitCode, type CliCommand } from '../internal/command.js';
import {
  EXIT_HELP,
  REMOTE_HELP,
  REMOTE_OPTIONS,
  UsageError,
  failureOf,
  remoteFrom,
} from '../internal/remote.js';
import { CommandOutput } from '../internal/output.js';

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
    const out = new CommandOutput('release', io, argv.includes('--json'));
    const options = {
      ...REMOTE_OPTIONS,
      green: { type: 'boolean', default: false },
      red: { type: 'boolean', default: false },
      reason: { type: 'string' },
    } as const;
    let values;
    let name: string | undefined;
    let status: 'green' | 'red' | undefined;
    try {
      const parsed = parseArgs({
        args: [...argv],
        options,
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
      return out.usage(err, Object.keys(options));
    }
    const remote = await remoteFrom(values, io);
    const client = remote.client;
    try {
      if (name !== undefined && status !== undefined) {
        const answer = await client.markRelease({
          release: name,
          status,
          ...(values.reason !== undefined ? { reason: values.reason } : {}),
        });
        if (out.json) out.data(answer);
        else out.line(`release ${line(answer.release)}`);
        return ExitCode.OK;
      }
      const list = await client.releases();
      if (out.json) {
        out.data(list);
        return ExitCode.OK;
      }
      if (list.releases.length === 0) out.line('no release verdicts yet');
      for (const r of list.releases) out.line(line(r));
      const verdict = new Map(list.releases.map((r) => [r.release, r.status]));
      out.line(`connected workers: ${list.workers.length}`);
      for (const w of list.workers) {
        const v =
          w.release === null ? 'no release reported' : (verdict.get(w.release) ?? 'no verdict');
        out.line(`  ${w.id} ${w.release ?? '-'} (${v})`);
      }
      return ExitCode.OK;
    } catch (err) {
      return out.fail(failureOf(err, remote.token));
    }
  },
};

function line(r: ReleaseRecord): string {
  return `${r.release} ${r.status.toUpperCase()} (#${r.seq} ${r.at} by ${r.actor}${r.reason ? `: ${r.reason}` : ''})`;
}
