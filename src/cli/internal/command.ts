/** Where a command writes; injected so tests can capture output. */
export interface CliIo {
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * One `killswitch` sub-command. `run` returns the exit code: 0 success, 1 the checked thing
 * failed (a broken log, a refused flip), 2 usage error, 3 cannot reach the control plane.
 */
export interface CliCommand {
  readonly name: string;
  readonly summary: string;
  /** Full `--help` text. */
  readonly help: string;
  run(argv: readonly string[], io: CliIo): Promise<number>;
}

/** The CLI's exit codes: 0 done, 1 refused or a check failed, 2 usage error, 3 unreachable. */
export const ExitCode = { OK: 0, FAILED: 1, USAGE: 2, UNREACHABLE: 3 } as const;
