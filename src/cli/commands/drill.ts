import { DrillInterruptedError } from '../../drill/run/drill-interrupted.js';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KillSwitchError } from '../../errors.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { CommandOutput, USAGE_ERROR_CODE } from '../internal/output.js';

const HELP = `usage: killswitch drill [--scenario <file>] [--workers <n>] [--out <dir>] [--json]
       killswitch drill --url <url> --token <token> --expect-workers <n|id,id,...>
                        --scope-tenant <t> [--scope-capability <c>] [--scope-run <r>] [--scope-feature <f>]
                        [--allow-global] [--sink <url>] [--ledger <file>]...
       killswitch drill --url <url> --token <token> [--public-key <file>]... [--scenario <file>]

Pulls the kill switch at every level of a scenario on a fleet and checks that it really stops
(DESIGN section 8, spec/KS-9-drill.md). Without --url it starts everything itself: a control
plane on the embedded default (temporary data directory), an effect sink, a slow LLM and
<n> worker processes on synthetic agent traffic. Before each lever every expected worker must be
connected and fresh; a worker that is not fails the drill.

  --scenario <file>       drill scenario (default spec/drills/standard.json)
  --workers <n>           worker processes (default: the scenario's, 8 in the standard one)
  --out <dir>             where report.json, summary.md and time-to-stop.svg go
                          (default reports/drill-<scenario>-<time>)
  --json                  print the JSON report on stdout instead of progress lines
  --keep-data             keep the temporary flip log and ledgers (their path is printed)

Against a fleet it did not start (staging), with --expect-workers it starts nothing and pulls
levers only on the drill scope you name, so traffic outside it is untouched:
  --url <url>             the control plane; without --expect-workers the drill's own workers use it
                          (its accept and stop-complete times are then compared with the workers'
                          clocks: run on the same machine or on NTP-synced hosts)
  --token <token>         bearer token allowed to halt and resume the scope (default $KILLSWITCH_TOKEN)
  --public-key <file>     the control plane's PEM public key when it signs (serve --signing-key);
                          the drill's own workers then check its signatures, as production workers
                          given publicKeys do (repeatable: a key ring during a rotation)
  --expect-workers <x>    a count, or a comma-separated list of worker ids, that must be connected
  --scope-tenant <t>      drill tenant (tenant lever; narrows the capability lever)
  --scope-capability <c>  canary capability (capability lever)
  --scope-run <r>         drill run (run lever)
  --scope-feature <f>     drill feature (feature lever)
  --allow-global          also pull the global lever (stops the whole fleet)
  --sink <url>            a drill effect sink to read effects from (GET /effects)
  --ledger <file>         a worker ledger (JSON lines) to check; repeat for each

exit codes: 0 every target met, 1 a target was missed (violations are printed), 2 usage error,
4 inconclusive: only timing targets were missed, on an overloaded host (load and event-loop delay
are printed; an effect after stop-complete is always a violation)`;

/**
 * `killswitch drill`: runs a drill scenario and exits non-zero on any violation. KS-9.6.2
 */
export const command: CliCommand = {
  name: 'drill',
  summary: 'pull the lever at every level on a fleet, measure, fail on a regression',
  help: HELP,
  async run(argv: readonly string[], io: CliIo): Promise<number> {
    const cli = new CommandOutput('drill', io, argv.includes('--json'));
    const usage = (message: string) =>
      cli.fail({
        code: USAGE_ERROR_CODE,
        message,
        hints: ["run 'killswitch drill --help' for its options"],
        exit: ExitCode.USAGE,
      });
    let values: ReturnType<typeof parse>['values'];
    try {
      ({ values } = parse(argv));
    } catch (err) {
      return cli.usage(err, DRILL_OPTIONS);
    }
    // Loaded here so `killswitch --help` stays light.
    const { loadScenario } = await import('../../drill/scenario.js');
    const { runDrill } = await import('../../drill/run/run-drill.js');
    let workers: number | undefined;
    if (values.workers !== undefined) {
      workers = Number(values.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
        return usage(`--workers: expected an integer 1..64, received ${values.workers}`);
      }
    }
    let expectWorkers: number | string[] | undefined;
    if (values['expect-workers'] !== undefined) {
      const raw = values['expect-workers'];
      expectWorkers = /^\d+$/.test(raw)
        ? Number(raw)
        : raw
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
      if (
        (typeof expectWorkers === 'number' && expectWorkers < 1) ||
        (Array.isArray(expectWorkers) && expectWorkers.length === 0)
      ) {
        return usage('--expect-workers: expected a count >= 1 or a list of worker ids');
      }
      if (values.url === undefined) {
        return usage('--expect-workers needs --url (the fleet’s control plane)');
      }
    }
    let publicKeys: string | undefined;
    if (values['public-key'] !== undefined) {
      if (values.url === undefined)
        return usage(
          '--public-key needs --url: the embedded control plane signs with a fresh key its workers are given',
        );
      if (values['expect-workers'] !== undefined)
        return usage(
          '--public-key is for the drill’s own workers; with --expect-workers it starts none (give the key to your workers)',
        );
      const { publicKeyRingOf } = await import('../../../providers/remote/stream-signatures.js');
      const texts: string[] = [];
      for (const file of values['public-key']) {
        try {
          const text = await readFile(file, 'utf8');
          publicKeyRingOf(text); // each file holds at least one Ed25519 public key in PEM
          texts.push(text);
        } catch (err) {
          return usage(`--public-key ${file}: ${(err as Error).message}`);
        }
      }
      publicKeys = texts.join('\n');
    }
    const scenarioPath = values.scenario ?? defaultScenario();
    let scenario;
    try {
      scenario = await loadScenario(scenarioPath, workers !== undefined ? { workers } : {});
    } catch (err) {
      return cli.fail({
        code: err instanceof KillSwitchError ? err.code : USAGE_ERROR_CODE,
        message: (err as Error).message,
        exit: ExitCode.USAGE,
      });
    }
    const out =
      values.out ??
      join('reports', `drill-${scenario.name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    const token = values.token ?? nonEmpty(io.env['KILLSWITCH_TOKEN']);
    const scope = {
      ...(values['scope-tenant'] !== undefined ? { tenant: values['scope-tenant'] } : {}),
      ...(values['scope-capability'] !== undefined
        ? { capability: values['scope-capability'] }
        : {}),
      ...(values['scope-run'] !== undefined ? { runId: values['scope-run'] } : {}),
      ...(values['scope-feature'] !== undefined ? { feature: values['scope-feature'] } : {}),
    };
    const start = Date.now();
    const log = values.json
      ? (l: string) => io.stderr(`[drill +${((Date.now() - start) / 1000).toFixed(1)}s] ${l}`)
      : (l: string) => io.stdout(`[drill +${((Date.now() - start) / 1000).toFixed(1)}s] ${l}`);
    // Ctrl-C (or a SIGTERM) stops what an embedded drill started and removes its data first. (A
    // fleet drill starts no process here: the signal ends it as before.)
    const interrupt = new AbortController();
    const onSignal = (): void => interrupt.abort();
    const embedded = values.url === undefined;
    if (embedded) {
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    }
    try {
      const outcome = await runDrill({
        signal: interrupt.signal,
        scenario,
        outDir: out,
        log,
        ...(values.url !== undefined ? { url: values.url } : {}),
        ...(token !== undefined ? { token } : {}),
        ...(publicKeys !== undefined ? { publicKeys } : {}),
        ...(expectWorkers !== undefined ? { expectWorkers } : {}),
        scope,
        allowGlobal: values['allow-global'] === true,
        ...(values.sink !== undefined ? { sinkUrl: values.sink } : {}),
        ...(values.ledger !== undefined ? { ledgerPaths: values.ledger } : {}),
        keepData: values['keep-data'] === true,
      });
      if (values.json) io.stdout(JSON.stringify(outcome.report));
      // 4: inconclusive (KS-9.3.7), the drill's own code beside the CLI's common ones.
      return outcome.exitCode === 0 ? ExitCode.OK : outcome.exitCode === 4 ? 4 : ExitCode.FAILED;
    } catch (err) {
      if (err instanceof DrillInterruptedError) {
        io.stderr(err.message);
        return 130; // 128 + SIGINT, as a shell reports an interrupted command
      }
      const ks = err instanceof KillSwitchError;
      return cli.fail({
        code: ks ? err.code : 'KS_INTERNAL',
        message: `${ks ? `${err.code}: ` : ''}${(err as Error).message}`,
        exit: ks && err.code === 'KS_INVALID_OPTION' ? ExitCode.USAGE : ExitCode.FAILED,
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};

const DRILL_OPTIONS = [
  'scenario',
  'workers',
  'out',
  'json',
  'keep-data',
  'url',
  'token',
  'public-key',
  'expect-workers',
  'scope-tenant',
  'scope-capability',
  'scope-run',
  'scope-feature',
  'allow-global',
  'sink',
  'ledger',
];

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      scenario: { type: 'string' },
      workers: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      'keep-data': { type: 'boolean', default: false },
      url: { type: 'string' },
      token: { type: 'string' },
      'public-key': { type: 'string', multiple: true },
      'expect-workers': { type: 'string' },
      'scope-tenant': { type: 'string' },
      'scope-capability': { type: 'string' },
      'scope-run': { type: 'string' },
      'scope-feature': { type: 'string' },
      'allow-global': { type: 'boolean', default: false },
      sink: { type: 'string' },
      ledger: { type: 'string', multiple: true },
    },
    allowPositionals: false,
    strict: true,
  });
}

/** spec/drills/standard.json: in the working directory, else next to the package. */
function defaultScenario(): string {
  const local = join('spec', 'drills', 'standard.json');
  if (existsSync(local)) return local;
  return fileURLToPath(new URL('../../../../spec/drills/standard.json', import.meta.url));
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
