import { parseArgs } from 'node:util';
import { readFlipLogFile } from '../../../providers/file/read-flip-log-file.js';
import { ErrorCode, LogCorruptError } from '../../errors.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { CommandOutput } from '../internal/output.js';

const HELP = `usage: killswitch verify <file> [--json]

Checks a file flip log (JSON lines) without changing it and without taking its lock: every line
parses, seq is dense from 1, each record's prev names the hash before it and its hash matches its
content, ids are unique. (KS-2.3.3, KS-2.5.1)

  --json   print one JSON object instead of text

exit codes:
  0  the chain verifies (a torn last line, which opening the store would cut, is reported as a warning)
  1  the chain is broken (the first bad seq and the reason are printed), or the file cannot be read
  2  usage error`;

/**
 * `killswitch verify <file> [--json]`: verifies a file flip log's hash chain and prints the record
 * count and the head hash, or the first bad seq and why. KS-2.5.1
 */
export const command: CliCommand = {
  name: 'verify',
  summary: 'check a file flip log’s hash chain',
  help: HELP,
  async run(argv: readonly string[], io: CliIo): Promise<number> {
    const out = new CommandOutput('verify', io, argv.includes('--json'));
    let json: boolean;
    let file: string;
    try {
      const { values, positionals } = parseArgs({
        args: [...argv],
        options: { json: { type: 'boolean', default: false } },
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length !== 1)
        throw new Error(positionals.length === 0 ? 'missing <file>' : 'expected one <file>');
      json = values.json === true;
      file = positionals[0]!;
    } catch (err) {
      return out.usage(err, ['json']);
    }

    try {
      const log = await readFlipLogFile(file);
      if (json) {
        io.stdout(
          JSON.stringify({
            ok: true,
            file,
            records: log.records.length,
            head: log.head,
            tornBytes: log.tornBytes,
          }),
        );
      } else {
        io.stdout(
          `ok: ${file}: ${log.records.length} records, head seq ${log.head.seq} hash ${log.head.hash}`,
        );
      }
      if (log.tornBytes > 0) {
        io.stderr(
          `warning: ${file}: torn last line (${log.tornBytes} bytes after seq ${log.head.seq}); opening the store cuts it`,
        );
      }
      return ExitCode.OK;
    } catch (err) {
      if (err instanceof LogCorruptError) {
        const reason = err.message.replace(/^flip log corrupt at seq \d+: /, '');
        if (json)
          io.stdout(JSON.stringify({ ok: false, file, code: err.code, seq: err.seq, reason }));
        else io.stdout(`broken: ${file}: seq ${err.seq}: ${reason}`);
        return ExitCode.FAILED;
      }
      // Not verified is not OK: an unreadable file fails the check (a script's `verify && ...`).
      const reason = err instanceof Error ? err.message : String(err);
      if (json)
        io.stdout(JSON.stringify({ ok: false, file, code: ErrorCode.STORE_UNAVAILABLE, reason }));
      else io.stderr(`killswitch verify: cannot read ${file}: ${reason}`);
      return ExitCode.FAILED;
    }
  },
};
