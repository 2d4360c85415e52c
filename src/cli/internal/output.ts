import type { ValidationIssue } from '../../errors.js';
import { ExitCode, type CliIo } from './command.js';
import { escapeText } from './escape-text.js';

/** The code of a usage error in `--json` output (not a library error code: the CLI's own). */
export const USAGE_ERROR_CODE = 'KS_USAGE';

/** A failed command, as printed: a message, what to do about it, and the exit code. */
export interface CliFailure {
  /** A `KS_*` code: the server's, the library's, or {@link USAGE_ERROR_CODE}. */
  readonly code: string;
  readonly message: string;
  /** HTTP status of a refusal. */
  readonly status?: number;
  readonly issues?: readonly ValidationIssue[];
  /** Lines that say what to do next (the command to run, where the token came from). */
  readonly hints?: readonly string[];
  readonly exit: number;
}

/**
 * Where one command writes. Text lines are escaped ({@link escapeText}) so nothing a flip or a
 * worker carries can forge a line or drive the terminal; `--json` output is the data as JSON, and
 * errors too (`{"error": {"code", "message", ...}}` on stdout, with the same exit codes), so a
 * script reads one stream. KS-5.3.7, KS-5.3.9
 */
export class CommandOutput {
  readonly name: string;
  readonly io: CliIo;
  readonly json: boolean;

  constructor(name: string, io: CliIo, json: boolean) {
    this.name = name;
    this.io = io;
    this.json = json;
  }

  /** One line of text output. */
  line(text: string): void {
    this.io.stdout(escapeText(text));
  }

  /** The answer as one JSON line. */
  data(value: unknown): void {
    this.io.stdout(JSON.stringify(value));
  }

  /** Prints a failure (text on stderr; with `--json` also the JSON error on stdout). */
  fail(f: CliFailure): number {
    this.io.stderr(`killswitch ${this.name}: ${escapeText(f.message)}`);
    for (const i of f.issues ?? [])
      this.io.stderr(
        `  ${escapeText(i.path.length ? i.path.join('.') : '(body)')}: ${escapeText(i.message)}`,
      );
    for (const h of f.hints ?? []) this.io.stderr(`  ${escapeText(h)}`);
    if (this.json) {
      this.data({
        error: {
          code: f.code,
          message: f.message,
          ...(f.status !== undefined ? { status: f.status } : {}),
          ...(f.issues !== undefined && f.issues.length > 0 ? { issues: f.issues } : {}),
          ...(f.hints !== undefined && f.hints.length > 0 ? { hints: f.hints } : {}),
        },
      });
    }
    return f.exit;
  }

  /**
   * A usage error: the error and one hint, never the whole help (it would scroll the error away).
   * An unknown option gets the closest known one ("did you mean --tenant?"). KS-5.3.10
   *
   * @param options - the command's option names, for the suggestion
   */
  usage(err: unknown, options: readonly string[] = []): number {
    const raw = err instanceof Error ? err.message : String(err);
    const unknown = /^Unknown option '(-{1,2}[^']*)'/.exec(raw)?.[1];
    let message = raw;
    let hint = `run 'killswitch ${this.name} --help' for its options`;
    if (unknown !== undefined) {
      message = `unknown option ${unknown}`;
      const near = closest(unknown.replace(/^-+/, ''), options);
      if (near !== undefined) hint = `did you mean --${near}? (${hint})`;
    } else if (/^Unexpected argument '/.test(raw)) {
      message = raw
        .replace(/\. This command does not take positional arguments$/, '')
        .replace(/^Unexpected argument/, 'unexpected argument');
    } else {
      message = raw.replace(/^Option '(-{1,2}[\w-]+)[^']*' argument missing$/, '$1 needs a value');
    }
    return this.fail({ code: USAGE_ERROR_CODE, message, hints: [hint], exit: ExitCode.USAGE });
  }
}

/** The option name closest to `typed` (edit distance at most 2, or a prefix), if any. */
export function closest(typed: string, options: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const t = typed.toLowerCase();
  for (const o of options) {
    const d = o.startsWith(t) && t.length >= 2 ? 0.5 : distance(t, o.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return bestD <= 2 ? best : undefined;
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        prev[j]! + 1,
        cur[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length]!;
}
