import { parseArgs } from 'node:util';
import { ExitCode, type CliCommand } from '../internal/command.js';
import { formatFlipLine } from '../internal/format.js';
import {
  EXIT_HELP,
  REMOTE_HELP,
  REMOTE_OPTIONS,
  failureOf,
  intFlag,
  remoteFrom,
} from '../internal/remote.js';
import { CommandOutput } from '../internal/output.js';

const HELP = `usage: killswitch log [--after <seq>] [--limit <n>] [--json]

Prints the flip log, oldest first, one flip a line. An operator's token, or a viewer's given
scopes, reads only the flips its scopes allow (KS-17.4.1): a page may then hold fewer than
--limit flips, or none; continue with the --after it prints until it prints none (KS-17.4.2).

  --after <seq>      only flips after this seq (default 0)
  --limit <n>        at most n flips, 1 to 1000 (default 100)
${REMOTE_HELP}

${EXIT_HELP}`;

/** `killswitch log`: a page of the flip log. */
export const command: CliCommand = {
  name: 'log',
  summary: 'print the flip log',
  help: HELP,
  async run(argv, io) {
    const out = new CommandOutput('log', io, argv.includes('--json'));
    const options = {
      ...REMOTE_OPTIONS,
      after: { type: 'string' },
      limit: { type: 'string' },
    } as const;
    let values;
    let after: number | undefined;
    let limit: number | undefined;
    try {
      values = parseArgs({
        args: [...argv],
        options,
        strict: true,
        allowPositionals: false,
      }).values;
      after = intFlag('after', values.after);
      limit = intFlag('limit', values.limit, 1000);
      if (limit === 0) throw new Error('--limit must be at least 1');
    } catch (err) {
      return out.usage(err, Object.keys(options));
    }
    const remote = await remoteFrom(values, io);
    try {
      const page = await remote.client.log({
        ...(after === undefined ? {} : { after }),
        ...(limit === undefined ? {} : { limit }),
      });
      if (out.json) {
        out.data(page);
        return ExitCode.OK;
      }
      for (const r of page.flips) out.line(formatFlipLine(r));
      if (page.flips.length === 0)
        out.line(
          page.next === null
            ? `(no flips after seq ${after ?? 0}; head is ${page.head})`
            : // KS-17.4.2 a scoped token's page examined records up to next without one it may read.
              `(no flips your token may read between seq ${after ?? 0} and ${page.next}; head is ${page.head})`,
        );
      if (page.next !== null) out.line(`(more: killswitch log --after ${page.next})`);
      return ExitCode.OK;
    } catch (err) {
      return out.fail(failureOf(err, remote.token));
    }
  },
};
