import { parseArgs } from 'node:util';
import { readFlipLogFile } from '../../../providers/file/read-flip-log-file.js';
import { headFileMismatch, readHeadFile } from '../../../providers/file/head-file.js';
import { logIdPath } from '../../../providers/file/log-id-file.js';
import { readFile } from 'node:fs/promises';
import { checkRecordSignatures, checkpointVerifies } from '../../integrity/record-signatures.js';
import { PublicKeyRing } from '../../integrity/signing-key.js';
import { releaseChainBreak } from '../../integrity/release-chain.js';
import type { ReleaseRecord } from '../../protocol/releases.js';
import { ErrorCode, LogCorruptError } from '../../errors.js';
import { headMismatch, parseExpectedHead, type ExpectedHead } from '../../integrity/statements.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { CommandOutput } from '../internal/output.js';

const HELP = `usage: killswitch verify <file> [--expect-head <seq>:<hash> | <checkpoint JSON> | @<file>]
                        [--public-key <file>]... [--json]
       killswitch verify --releases <releases.jsonl> [--public-key <file>]... [--json]

Checks a file flip log (JSON lines) without changing it and without taking its lock: every line
parses, seq is dense from 1, each record's prev names the hash before it and its hash matches its
content, ids are unique. (KS-2.3.3, KS-2.5.1)

  --expect-head <head>   a head kept elsewhere (KS-17.7.4): the log must hold that seq with that
                         hash (it may have grown since). With --public-key, a checkpoint
                         must carry a signature that verifies. Catches records cut from the end and a
                         rewritten history, which the chain alone cannot. '@file' reads it from a
                         file (a saved 'GET /v1/checkpoint' answer, or '<seq>:<hash>').
  --public-key <file>    a PEM public key (repeatable; a file may hold several) the records'
                         signatures must verify under (KS-17.7.3): every signature is checked,
                         and a log with no signed record fails. Without it, only the rule that no
                         unsigned record follows a signed one is checked.
  --json                 print one JSON object instead of text

--releases checks a release-verdict file instead (KS-17.7.6): seq dense, each verdict chained to
the one before (prev, hash), signatures present after the first signed one and, with
--public-key, verifying.

The head file beside the log (<file>.head, the last acknowledged head, KS-17.7.5) is checked when
present: the log must hold the record it names.

exit codes:
  0  the chain verifies (a torn last line, which opening the store would cut, is reported as a warning)
  1  the chain is broken (the first bad seq and the reason are printed), the log does not hold the
     expected head, or the file cannot be read
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
    let expected: ExpectedHead | undefined;
    let ring: PublicKeyRing | undefined;
    let releases: string | undefined;
    try {
      const { values, positionals } = parseArgs({
        args: [...argv],
        options: {
          json: { type: 'boolean', default: false },
          'expect-head': { type: 'string' },
          'public-key': { type: 'string', multiple: true },
          releases: { type: 'string' },
        },
        allowPositionals: true,
        strict: true,
      });
      releases = values.releases;
      if (releases !== undefined && positionals.length > 0)
        throw new Error('--releases takes the release file; give no log <file> with it');
      if (releases === undefined && positionals.length !== 1)
        throw new Error(positionals.length === 0 ? 'missing <file>' : 'expected one <file>');
      json = values.json === true;
      file = releases ?? positionals[0]!;
      const keys = values['public-key'];
      if (keys !== undefined) ring = await PublicKeyRing.load(keys);
      const head = values['expect-head'];
      if (head !== undefined) {
        expected = parseExpectedHead(
          head.startsWith('@') ? await readFile(head.slice(1), 'utf8') : head,
        );
      }
    } catch (err) {
      return out.usage(err, ['json']);
    }

    if (releases !== undefined) return verifyReleases(releases, ring, json, io);
    try {
      const log = await readFlipLogFile(file);
      // KS-17.7.3 signatures, KS-17.7.5 the acknowledged head beside the log.
      const ackHead = await readHeadFile(file);
      if (ring !== undefined || ackHead !== undefined || log.sigs.some((x) => x !== undefined)) {
        const logId = await readLogId(file);
        const signed = checkRecordSignatures(
          log.records.map((r, i) => ({ seq: r.seq, hash: r.hash, sig: log.sigs[i] })),
          logId ?? '',
          logId === undefined ? undefined : ring,
          'all',
        );
        if (ring !== undefined && logId === undefined && log.records.length > 0) {
          throw new LogCorruptError(
            1,
            `no identity ${logIdPath(file)} beside the log: its signatures cannot be checked`,
          );
        }
        if (ring !== undefined && signed === 0 && log.records.length > 0) {
          throw new LogCorruptError(
            log.head.seq,
            'no record is signed: the log cannot be authenticated with --public-key',
          );
        }
        if (ackHead !== undefined) {
          const bad = headFileMismatch(
            ackHead,
            logId ?? ackHead.logId,
            log.records,
            ring,
            signed > 0,
          );
          if (bad !== undefined) throw bad;
        }
      }
      // KS-17.7.4: a head kept elsewhere catches what the chain cannot (a cut end, a rewrite).
      // With keys, a checkpoint kept elsewhere must carry the control plane's signature.
      const forged =
        ring !== undefined &&
        expected?.checkpoint !== undefined &&
        !checkpointVerifies(expected.checkpoint, ring)
          ? `the checkpoint's signature ${expected.checkpoint.sig === undefined ? 'is missing' : 'does not verify under the given keys'}`
          : undefined;
      const mismatch =
        forged ?? (expected === undefined ? undefined : headMismatch(log.records, expected));
      if (mismatch !== undefined) {
        if (json) {
          io.stdout(
            JSON.stringify({
              ok: false,
              file,
              code: ErrorCode.LOG_CORRUPT,
              seq: expected!.seq,
              reason: mismatch,
            }),
          );
        } else io.stdout(`broken: ${file}: expected head seq ${expected!.seq}: ${mismatch}`);
        return ExitCode.FAILED;
      }
      if (json) {
        io.stdout(
          JSON.stringify({
            ok: true,
            file,
            records: log.records.length,
            head: log.head,
            tornBytes: log.tornBytes,
            signed: log.sigs.filter((x) => x !== undefined).length,
            ...(expected === undefined ? {} : { expectedHead: { seq: expected.seq, ok: true } }),
          }),
        );
      } else {
        io.stdout(
          `ok: ${file}: ${log.records.length} records, head seq ${log.head.seq} hash ${log.head.hash}` +
            (expected === undefined ? '' : `; holds the expected head seq ${expected.seq}`),
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

/** The identity in `<log>.logid`, or undefined when there is none (verify writes nothing). */
async function readLogId(file: string): Promise<string | undefined> {
  try {
    const v = JSON.parse(await readFile(logIdPath(file), 'utf8')) as { logId?: unknown };
    return typeof v.logId === 'string' ? v.logId : undefined;
  } catch {
    return undefined;
  }
}

/** `verify --releases`: the release-verdict file's chain (KS-17.7.6). */
async function verifyReleases(
  file: string,
  ring: PublicKeyRing | undefined,
  json: boolean,
  io: CliIo,
): Promise<number> {
  let records: ReleaseRecord[];
  try {
    const text = await readFile(file, 'utf8');
    const end = text.lastIndexOf('\n') + 1;
    records = text
      .slice(0, end)
      .split('\n')
      .slice(0, -1)
      .map((l, i) => {
        try {
          return JSON.parse(l) as ReleaseRecord;
        } catch {
          throw new LogCorruptError(i + 1, `line ${i + 1} is not valid JSON`);
        }
      });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    if (json)
      io.stdout(JSON.stringify({ ok: false, file, code: ErrorCode.JOURNAL_CORRUPT, reason }));
    else io.stdout(`broken: ${file}: ${reason}`);
    return ExitCode.FAILED;
  }
  const broken = releaseChainBreak(records, ring);
  const signed = records.filter((r) => r.sig !== undefined).length;
  const unsignedWithKeys =
    broken === undefined && ring !== undefined && records.length > 0 && signed === 0;
  if (broken !== undefined || unsignedWithKeys) {
    const line = broken?.line ?? records.length;
    const reason =
      broken?.reason ?? 'no verdict is signed: the file cannot be authenticated with --public-key';
    if (json)
      io.stdout(JSON.stringify({ ok: false, file, code: ErrorCode.JOURNAL_CORRUPT, line, reason }));
    else io.stdout(`broken: ${file}: line ${line}: ${reason}`);
    return ExitCode.FAILED;
  }
  if (json) io.stdout(JSON.stringify({ ok: true, file, verdicts: records.length, signed }));
  else
    io.stdout(
      `ok: ${file}: ${records.length} verdicts, chained${signed > 0 ? `, ${signed} signed` : ''}`,
    );
  return ExitCode.OK;
}
