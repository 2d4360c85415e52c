#!/usr/bin/env node
import { ExitCode, type CliCommand, type CliIo } from './internal/command.js';
import { closest } from './internal/output.js';

/** Sub-commands are loaded on demand, so `killswitch verify` does not load the server. */
const COMMANDS: Record<string, () => Promise<{ command: CliCommand }>> = {
  // one line per command: name: () => import('./commands/<name>.js'),
  verify: () => import('./commands/verify.js'),
  serve: () => import('./commands/serve.js'),
  flip: () => import('./commands/flip.js'),
  resume: () => import('./commands/resume.js'),
  status: () => import('./commands/status.js'),
  log: () => import('./commands/log.js'),
  workers: () => import('./commands/workers.js'),
  drill: () => import('./commands/drill.js'),
  report: () => import('./commands/report.js'),
  release: () => import('./commands/release.js'),
  token: () => import('./commands/token.js'),
  key: () => import('./commands/key.js'),
  db: () => import('./commands/db.js'),
  gateway: () => import('./commands/gateway.js'),
};

/** The package an `ERR_MODULE_NOT_FOUND` names as missing, if that is what `err` is. */
function missingPackage(err: unknown): string | undefined {
  if ((err as NodeJS.ErrnoException | undefined)?.code !== 'ERR_MODULE_NOT_FOUND') return undefined;
  return /Cannot find package '([^']+)'/.exec((err as Error).message)?.[1];
}

const USAGE = `usage: killswitch <command> [options]

commands: ${Object.keys(COMMANDS).join(', ')}
run 'killswitch <command> --help' for a command's options.`;

/**
 * Runs one `killswitch` command line and returns its exit code.
 *
 * @param argv - the arguments after `killswitch`
 * @param io - where output goes
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(USAGE);
    return name === undefined ? 2 : 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (load === undefined) {
    const near = closest(name, Object.keys(COMMANDS));
    io.stderr(
      `killswitch: unknown command '${name}'${near !== undefined ? ` (did you mean ${near}?)` : ''}`,
    );
    io.stderr(`  commands: ${Object.keys(COMMANDS).join(', ')}`);
    return 2;
  }
  let command: CliCommand;
  try {
    ({ command } = await load());
  } catch (err) {
    // An optional peer the command needs (prom-client for the gateway's /metrics): say which and
    // how to install it, instead of a module-resolution stack trace.
    const missing = missingPackage(err);
    if (missing === undefined) throw err;
    io.stderr(
      `killswitch ${name}: needs the optional package '${missing}', which is not installed (npm install ${missing})`,
    );
    return ExitCode.USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(command.help);
    return 0;
  }
  return command.run(rest, io);
}

// KS-5.3.8 a reader that goes away (`killswitch log | head -1`) ends the output, not the command:
// Node reports the closed pipe as an 'error' event, which unhandled prints a stack trace and
// exits 1 ("refused"). Later lines are dropped; the command finishes with its own exit code.
let stdoutClosed = false;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') stdoutClosed = true;
  else throw err;
});
process.stderr.on('error', () => undefined);

const io: CliIo = {
  stdout: (l) => {
    if (!stdoutClosed) process.stdout.write(l + '\n');
  },
  stderr: (l) => process.stderr.write(l + '\n'),
  env: process.env,
};

main(process.argv.slice(2), io).then(
  (code) => {
    // serve keeps running: it resolves only when the server stops.
    process.exitCode = code;
  },
  (err: unknown) => {
    io.stderr(`killswitch: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
