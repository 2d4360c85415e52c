import type { FlipSummary, HaltCause } from './model/halt-cause.js';

/**
 * Stable error codes. Each is part of the public API: log lines, HTTP bodies and tests match on
 * the code, never on the message.
 */
export const ErrorCode = {
  /** An effect was refused (or aborted) because a matching halt is active. */
  HALTED: 'KS_HALTED',
  /** The kill state is stale (the flag source went silent); the answer failed closed. */
  STALE: 'KS_STALE',
  /** The flip log's hash chain or sequence is broken at a named seq. */
  LOG_CORRUPT: 'KS_LOG_CORRUPT',
  /** Input (a flip, a selector, a context, a request body) failed validation. */
  INVALID_INPUT: 'KS_INVALID_INPUT',
  /** An option passed to a constructor is invalid. */
  INVALID_OPTION: 'KS_INVALID_OPTION',
  /** A flip id was reused for a different flip. */
  ID_CONFLICT: 'KS_ID_CONFLICT',
  /**
   * The log seen is not the log applied: another `logId`, a lower seq than applied, or the same
   * seq with another hash (a restored backup, a failover that lost commits, a cut tail, a replica
   * on another log). The message names both sides. DESIGN section 5, KS-6.4
   */
  LOG_DIVERGED: 'KS_LOG_DIVERGED',
  /** A record arrived out of order (its seq is not the next one). */
  SEQ_GAP: 'KS_SEQ_GAP',
  /** The store was closed or never opened. */
  STORE_CLOSED: 'KS_STORE_CLOSED',
  /** The store could not be reached or written. */
  STORE_UNAVAILABLE: 'KS_STORE_UNAVAILABLE',
  /** A guarded effect was aborted because a matching halt arrived while it ran. */
  ABORTED: 'KS_ABORTED',
  /** A resume was refused (release gate, nothing to resume). */
  RESUME_REFUSED: 'KS_RESUME_REFUSED',
  /** A request carried no valid credentials. */
  UNAUTHORIZED: 'KS_UNAUTHORIZED',
  /** The credentials do not allow this action. */
  FORBIDDEN: 'KS_FORBIDDEN',
  /** An internal invariant failed; the operation failed closed. */
  INTERNAL: 'KS_INTERNAL',
  /** A guarded effect was not dispatched again: its key already landed, is in doubt, or is in flight. */
  DUPLICATE_EFFECT: 'KS_DUPLICATE_EFFECT',
  /** The side-effect ledger file is corrupt before its last line. */
  LEDGER_CORRUPT: 'KS_LEDGER_CORRUPT',
  /** An HTTP route does not exist. */
  NOT_FOUND: 'KS_NOT_FOUND',
  /** An HTTP route exists but not for this method. */
  METHOD_NOT_ALLOWED: 'KS_METHOD_NOT_ALLOWED',
  /** A request body is larger than the server accepts. */
  PAYLOAD_TOO_LARGE: 'KS_PAYLOAD_TOO_LARGE',
  /** A rate or count limit of the control plane was reached (HTTP 429, naming the limit). */
  LIMIT_EXCEEDED: 'KS_LIMIT_EXCEEDED',
  /** The control plane could not be reached (connection refused, timeout). */
  UNREACHABLE: 'KS_UNREACHABLE',
  /**
   * Something answered at the control plane's URL, but not a killswitch control plane (no
   * killswitch error body: a wrong port or path, another service, a proxy's error page).
   */
  NOT_A_CONTROL_PLANE: 'KS_NOT_A_CONTROL_PLANE',
  /** A scheduled retry or timer was cancelled by its owner (not by a halt), or its scheduler closed. */
  CANCELLED: 'KS_CANCELLED',
  /** The queue journal file is corrupt before its last line. */
  JOURNAL_CORRUPT: 'KS_JOURNAL_CORRUPT',
  /** A durable run cannot do what was asked: unknown run, started twice, a step name reused. */
  RUN_CONFLICT: 'KS_RUN_CONFLICT',
} as const;

/** One of {@link ErrorCode}'s values. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** One validation problem: where, and what was wrong (the shape of zod's issues). */
export interface ValidationIssue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * Base class of every error this library throws on purpose.
 *
 * @example
 * ```ts
 * try { await guard.run(ctx, step, effect); }
 * catch (e) { if (e instanceof KillSwitchError && e.code === 'KS_HALTED') { ... } }
 * ```
 */
export class KillSwitchError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KillSwitchError';
    this.code = code;
  }
}

/** Input failed validation; {@link ValidationError.issues} lists every problem at once. */
export class ValidationError extends KillSwitchError {
  readonly issues: readonly ValidationIssue[];

  constructor(what: string, issues: readonly ValidationIssue[]) {
    super(
      ErrorCode.INVALID_INPUT,
      `invalid ${what}: ${issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ')}`,
    );
    this.name = 'ValidationError';
    this.issues = issues;
  }
}

/** A constructor option is invalid; the message names the option, what was expected and what arrived. */
export class InvalidOptionError extends KillSwitchError {
  readonly option: string;

  constructor(option: string, expected: string, received: unknown) {
    super(
      ErrorCode.INVALID_OPTION,
      `option ${option}: expected ${expected}, received ${describe(received)}`,
    );
    this.name = 'InvalidOptionError';
    this.option = option;
  }
}

/** The flip log is corrupt at {@link LogCorruptError.seq} (1-based; the first bad record). */
export class LogCorruptError extends KillSwitchError {
  readonly seq: number;

  constructor(seq: number, detail: string) {
    super(ErrorCode.LOG_CORRUPT, `flip log corrupt at seq ${seq}: ${detail}`);
    this.name = 'LogCorruptError';
    this.seq = seq;
  }
}

/**
 * An effect was refused before dispatch, or aborted while running, because the kill switch
 * answered halted. {@link HaltedError.flip} names the matching flip when one is known; when the
 * answer failed closed instead (a stale or erroring source), {@link HaltedError.failClosed} says
 * why. The message reads well either way.
 */
export class HaltedError extends KillSwitchError {
  /** A matching halt (`halted`), or a kill state that could not be trusted (`stale`, `error`). */
  readonly haltCause: HaltCause;
  /** The matching flip, when one is known. */
  readonly flip: FlipSummary | undefined;
  /**
   * Why the answer failed closed, when it did, in the source's words (`no snapshot yet (the
   * control plane at http://... refused this worker's token (401 KS_UNAUTHORIZED: unknown
   * token))`). KS-16.2.2
   */
  readonly failClosed: string | undefined;

  constructor(
    code: typeof ErrorCode.HALTED | typeof ErrorCode.ABORTED,
    message: string,
    cause: HaltCause,
    flip: FlipSummary | undefined,
    failClosed?: string,
  ) {
    super(code, message);
    this.name = 'HaltedError';
    this.haltCause = cause;
    this.flip = flip;
    this.failClosed = failClosed;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeof value;
  }
}
