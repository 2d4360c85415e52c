import { ErrorCode, KillSwitchError } from '../errors.js';

/**
 * The side-effect ledger file is broken before its last line (a torn last line is cut instead);
 * the ledger refuses to open rather than guess which effects left. KS-4.5.3
 */
export class LedgerCorruptError extends KillSwitchError {
  /** 1-based line number of the first bad line. */
  readonly line: number;

  constructor(path: string, line: number, detail: string) {
    super(
      ErrorCode.LEDGER_CORRUPT,
      `side-effect ledger ${path} corrupt at line ${line}: ${detail}`,
    );
    this.name = 'LedgerCorruptError';
    this.line = line;
  }
}
