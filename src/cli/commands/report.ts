import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ErrorCode, KillSwitchError } from '../../errors.js';
import { FileSideEffectLedger } from '../../ledger/file-side-effect-ledger.js';
import type { SideEffectLedger } from '../../ledger/side-effect-ledger.js';
import { FileRunJournal } from '../../run/file-run-journal.js';
import type { RunState } from '../../run/run-record.js';
import {
  buildRecoveryReport,
  formatRecoveryReport,
  type ReportFilter,
} from '../../report/recovery-report.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import {
  REMOTE_HELP,
  REMOTE_OPTIONS,
  UsageError,
  clientFrom,
  failureOf,
  intFlag,
} from '../internal/remote.js';
import { CommandOutput } from '../internal/output.js';
import { dataDirOf, redact } from '../internal/store-factory.js';

const HELP = `usage: killswitch report [--run <id>] [--tenant <t>] [--capability <c>] [--since-seq <n>]
                        [--ledger <path>|postgres://…] [--log <flips.jsonl>]
                        [--runs <runs.jsonl>] [--json]

The recovery report (KS-10.4): per run, the effects intended vs landed, the effects in doubt
(an intent or an abort with no outcome: they may or may not have landed), the ones that landed
after a halt aborted them, the refused/aborted/cancelled/failed counts, and the compensation
list (newest first) drawn from the actions effects declared with their intents. Filters combine.

  --run <id>           one run
  --tenant <t>         effects of tenant t
  --capability <c>     effects of capability c
  --since-seq <n>      effects refused or aborted by flip n or later, or touched since flip n
                       was appended (its time is read from --log, else from the control plane)
  --ledger <where>     a ledger file (read only, never modified) or a postgres:// URL
                       (default $KILLSWITCH_LEDGER, else <data-dir>/effects.jsonl)
  --log <path>         a flip-log file to read flip n from, instead of the control plane
  --runs <path>        a run journal (read only): each run's status (running, halted, in-doubt,
                       completed, ...), executions and workers, and runs refused before any effect
${REMOTE_HELP}

exit codes: 0 report printed, 1 the ledger or the flip could not be read, 2 usage error,
            3 control plane unreachable (--since-seq without --log)`;

/** `killswitch report`: the recovery report from a side-effect ledger. KS-10.4.4 */
export const command: CliCommand = {
  name: 'report',
  summary: 'recovery report: intended vs landed, in doubt, compensations',
  help: HELP,
  async run(argv, io) {
    const out = new CommandOutput('report', io, argv.includes('--json'));
    const options = {
      ...REMOTE_OPTIONS,
      run: { type: 'string' },
      tenant: { type: 'string' },
      capability: { type: 'string' },
      'since-seq': { type: 'string' },
      ledger: { type: 'string' },
      log: { type: 'string' },
      runs: { type: 'string' },
    } as const;
    let values;
    let sinceSeq: number | undefined;
    try {
      values = parseArgs({
        args: [...argv],
        options,
        strict: true,
        allowPositionals: false,
      }).values;
      sinceSeq = intFlag('since-seq', values['since-seq']);
      if (sinceSeq === 0) throw new UsageError('--since-seq must be at least 1');
      for (const k of ['run', 'tenant', 'capability', 'ledger', 'log', 'runs'] as const) {
        if (values[k] === '') throw new UsageError(`--${k} must not be empty`);
      }
    } catch (err) {
      return out.usage(err, Object.keys(options));
    }
    const filter: { -readonly [K in keyof ReportFilter]: ReportFilter[K] } = {};
    if (values.run !== undefined) filter.runId = values.run;
    if (values.tenant !== undefined) filter.tenant = values.tenant;
    if (values.capability !== undefined) filter.capability = values.capability;
    let ledger: SideEffectLedger | undefined;
    try {
      if (sinceSeq !== undefined) {
        filter.sinceSeq = sinceSeq;
        filter.since = await flipTime(sinceSeq, values, io);
      }
      const where =
        values.ledger ??
        nonEmpty(io.env['KILLSWITCH_LEDGER']) ??
        join(dataDirOf(values['data-dir'], io.env), 'effects.jsonl');
      ledger = await openLedger(where);
      const runStates = values.runs === undefined ? [] : await readRuns(values.runs);
      const report = buildRecoveryReport(await ledger.entries(), filter, runStates);
      if (out.json) out.data({ ledger: describe(where), ...report });
      else {
        out.line(`ledger: ${describe(where)}`);
        for (const line of formatRecoveryReport(report)) out.line(line);
      }
      return ExitCode.OK;
    } catch (err) {
      return out.fail(failureOf(err));
    } finally {
      await ledger?.close().catch(() => undefined);
    }
  },
};

/** Every run of a run journal file, read only (a reader never locks or cuts it). */
async function readRuns(path: string): Promise<RunState[]> {
  const abs = resolve(path);
  try {
    await access(abs);
  } catch {
    throw new KillSwitchError(ErrorCode.STORE_UNAVAILABLE, `no run journal at ${abs}`);
  }
  const journal = new FileRunJournal({ path: abs, logger: { warn: () => undefined } });
  try {
    return await journal.runs();
  } finally {
    await journal.close();
  }
}

/** When flip `seq` was appended: from a flip-log file, or from the control plane. */
async function flipTime(
  seq: number,
  values: { log?: string | undefined; url?: string; token?: string; 'data-dir'?: string },
  io: CliIo,
): Promise<string> {
  if (values.log !== undefined) {
    const { readFlipLogFile } = await import('../../../providers/file/read-flip-log-file.js');
    const { records } = await readFlipLogFile(resolve(values.log));
    const r = records.find((x) => x.seq === seq);
    if (r === undefined)
      throw new KillSwitchError(ErrorCode.NOT_FOUND, `no flip #${seq} in ${values.log}`);
    return r.at;
  }
  const client = await clientFrom(values, io);
  const page = await client.log({ after: seq - 1, limit: 1 });
  const r = page.flips[0];
  if (r === undefined || r.seq !== seq)
    throw new KillSwitchError(ErrorCode.NOT_FOUND, `the control plane has no flip #${seq}`);
  return r.at;
}

/** A ledger file (read only: a reader never cuts or locks it) or the PostgreSQL ledger. */
async function openLedger(where: string): Promise<SideEffectLedger> {
  if (/^postgres(?:ql)?:\/\//i.test(where)) {
    // A variable specifier: pg loads only when a postgres:// ledger is asked for. KS-10.3.4
    const specifier = '../../../providers/postgres-ledger/index.js';
    let mod: {
      PostgresSideEffectLedger?: new (o: { connectionString: string }) => SideEffectLedger;
    };
    try {
      mod = (await import(specifier)) as typeof mod;
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `--ledger ${redact(where)}: the PostgreSQL ledger is not available (${(err as Error).message}); is 'pg' installed?`,
      );
    }
    if (typeof mod.PostgresSideEffectLedger !== 'function')
      throw new KillSwitchError(ErrorCode.INVALID_OPTION, '--ledger: no PostgresSideEffectLedger');
    return new mod.PostgresSideEffectLedger({ connectionString: where });
  }
  const path = resolve(where);
  try {
    await access(path);
  } catch {
    // A mistyped path must not read as "no effects".
    throw new KillSwitchError(
      ErrorCode.STORE_UNAVAILABLE,
      `no ledger file at ${path}: pass --ledger <file> (where your workers' FileSideEffectLedger writes) or a postgres:// URL, or set $KILLSWITCH_LEDGER`,
    );
  }
  const l = new FileSideEffectLedger({ path, logger: { warn: () => undefined } });
  await l.open();
  return l;
}

function describe(where: string): string {
  return /^postgres/i.test(where) ? redact(where) : resolve(where);
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}
