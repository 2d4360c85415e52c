import { z } from 'zod';
import { ErrorCode, KillSwitchError } from '../errors.js';
import { idText } from './text.js';

/**
 * Where a log stands: its identity (`logId`, random at genesis), the seq of its last record and
 * that record's hash. Snapshots, heartbeats and acknowledgement answers carry one, so a worker or a
 * replica can tell that what it sees is the log it applied, and not behind it. DESIGN section 5,
 * KS-6.4
 */
export interface LogPosition {
  readonly logId: string;
  readonly seq: number;
  readonly hash: string;
}

/** Longest `logId` accepted on the wire. */
export const MAX_LOG_ID_LENGTH = 128;

/** zod schema of a `logId` (the id alphabet of src/protocol/text.ts). */
export const logIdSchema = idText(MAX_LOG_ID_LENGTH);

/** zod schema of a record hash (64 lower-case hex digits). */
export const hashSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

/** zod schema of a {@link LogPosition}. */
export const logPositionSchema = z.object({
  logId: logIdSchema,
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  hash: hashSchema,
});

/** How a position seen on the wire relates to the one applied. */
export const Divergence = {
  /** Another log: a replica or restored store with another identity. */
  OTHER_LOG: 'other-log',
  /** The same log, but behind what was applied: it moved backwards. */
  BEHIND: 'behind',
  /** The same log and seq, another hash: it forked (a cut tail, then new appends). */
  FORKED: 'forked',
} as const;
/** One of {@link Divergence}'s values. */
export type Divergence = (typeof Divergence)[keyof typeof Divergence];

/**
 * Compares a position seen (a snapshot, a heartbeat, an ack answer) with the one applied.
 * Returns undefined when `seen` may follow `applied` (same log, at or beyond it; at the same seq
 * with the same hash), else the kind of divergence. A seen seq beyond the applied one cannot be
 * checked against the applied hash; the hash chain of the records that follow checks it.
 *
 * @example divergence({ logId: 'a', seq: 5, hash }, { logId: 'a', seq: 3, hash: h3 }) // 'behind'
 */
export function divergence(applied: LogPosition, seen: LogPosition): Divergence | undefined {
  if (seen.logId !== applied.logId) return Divergence.OTHER_LOG;
  if (seen.seq < applied.seq) return Divergence.BEHIND;
  if (seen.seq === applied.seq && seen.hash !== applied.hash) return Divergence.FORKED;
  return undefined;
}

/** `log <id> at seq <n> (hash <first 12 hex digits>)`, as every divergence message names a side. */
export function describePosition(p: LogPosition): string {
  return `log ${p.logId} at seq ${p.seq} (hash ${p.hash.slice(0, 12)})`;
}

/**
 * The error for a divergence, naming both sides and what it means. Never a warning: whoever
 * raises it fails closed until a log that continues the applied one is seen.
 *
 * @param applied - what the side raising it applied (`this worker applied`, `this replica applied`)
 * @param seen - what the other side serves, and who it is (`http://b:7411 serves`)
 */
export class LogDivergedError extends KillSwitchError {
  readonly kind: Divergence;
  readonly applied: LogPosition;
  readonly seen: LogPosition;

  constructor(
    kind: Divergence,
    applied: LogPosition,
    seen: LogPosition,
    who: { readonly applied: string; readonly seen: string },
  ) {
    const why =
      kind === Divergence.OTHER_LOG
        ? 'another log (a replica or store with another identity)'
        : kind === Divergence.BEHIND
          ? 'the log moved backwards (a restored backup, a failover that lost commits, a cut tail)'
          : 'the log forked at that seq (records were cut and others appended in their place)';
    super(
      ErrorCode.LOG_DIVERGED,
      `${who.seen} ${describePosition(seen)}, but ${who.applied} ${describePosition(applied)}: ${why}; failing closed`,
    );
    this.name = 'LogDivergedError';
    this.kind = kind;
    this.applied = applied;
    this.seen = seen;
  }
}
