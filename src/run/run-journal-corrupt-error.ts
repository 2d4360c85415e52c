import { ErrorCode, KillSwitchError } from '../errors.js';

/**
 * The run journal file is broken before its last line (a torn last line is cut instead); the
 * journal refuses to open rather than guess which steps landed. KS-10.1.3
 */
export class RunJournalCorruptError extends KillSwitchError {
  /** 1-based line number of the first bad line. */
  readonly line: number;

  constructor(path: string, line: number, detail: string) {
    super(ErrorCode.JOURNAL_CORRUPT, `run journal ${path} corrupt at line ${line}: ${detail}`);
    this.name = 'RunJournalCorruptError';
    this.line = line;
  }
}
