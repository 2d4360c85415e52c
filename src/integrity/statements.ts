import { hash } from 'node:crypto';
import { ErrorCode, KillSwitchError } from '../errors.js';

/**
 * The bytes a record's signature covers (KS-17.7.2): the log, the seq and the record's hash, which
 * chains every record before it. A version prefix keeps a record signature from ever verifying as
 * a checkpoint's.
 */
export function recordStatement(logId: string, seq: number, hash: string): Buffer {
  return Buffer.from(`killswitch-record-v1\n${logId}\n${seq}\n${hash}`, 'utf8');
}

/**
 * The bytes a snapshot's signature covers (KS-17.7.9): the SHA-256 of the snapshot event's data
 * exactly as sent (its JSON names the log, the seq, the head's hash and every active halt), so a
 * worker checks the text it is about to apply, whatever it parses into.
 */
export function snapshotStatement(data: string): Buffer {
  return Buffer.from(`killswitch-snapshot-v1\n${hash('sha256', data, 'hex')}`, 'utf8');
}

/**
 * The bytes an acknowledgement answer's signature covers (KS-17.7.10): the nonce the worker sent
 * with that acknowledgement and what renews its lease (the log, the head, its hash, the lease
 * length). The nonce makes the answer good for that one acknowledgement: an answer recorded
 * earlier cannot renew a lease again, and no clock needs to agree with the server's.
 */
export function ackAnswerStatement(
  nonce: string,
  a: {
    readonly logId: string;
    readonly head: number;
    readonly hash: string;
    readonly staleAfterMs: number;
  },
): Buffer {
  return Buffer.from(
    `killswitch-ack-v1\n${nonce}\n${a.logId}\n${a.head}\n${a.hash}\n${a.staleAfterMs}`,
    'utf8',
  );
}

/** A log's head at a moment, as the control plane publishes it (KS-17.7.4). */
export interface Checkpoint {
  readonly logId: string;
  readonly seq: number;
  readonly hash: string;
  /** ISO 8601 instant the control plane took it. */
  readonly at: string;
  /** `"<kid>:<base64url>"` over {@link checkpointStatement}, when the control plane holds a key. */
  readonly sig?: string;
}

/** The bytes a checkpoint's signature covers. KS-17.7.4 */
export function checkpointStatement(c: Omit<Checkpoint, 'sig'>): Buffer {
  return Buffer.from(`killswitch-checkpoint-v1\n${c.logId}\n${c.seq}\n${c.hash}\n${c.at}`, 'utf8');
}

/** What `--expect-head` names: a seq and its hash, and the log when a checkpoint gave it. */
export interface ExpectedHead {
  readonly seq: number;
  readonly hash: string;
  readonly logId?: string;
  /** The checkpoint it came from (to check its signature), if any. */
  readonly checkpoint?: Checkpoint;
}

/**
 * Parses `--expect-head`: `<seq>:<hash>` or a checkpoint's JSON (KS-17.7.4).
 *
 * @throws {KillSwitchError} `KS_INVALID_INPUT` saying what was expected
 */
export function parseExpectedHead(text: string): ExpectedHead {
  const t = text.trim();
  const m = /^(\d{1,15}):([0-9a-f]{64})$/.exec(t);
  if (m !== null) return { seq: Number(m[1]), hash: m[2]! };
  if (t.startsWith('{')) {
    let v: unknown;
    try {
      v = JSON.parse(t);
    } catch {
      v = undefined;
    }
    const c = v as Partial<Checkpoint> | undefined;
    if (
      c !== undefined &&
      c !== null &&
      typeof c.logId === 'string' &&
      Number.isSafeInteger(c.seq) &&
      (c.seq ?? -1) >= 0 &&
      typeof c.hash === 'string' &&
      /^[0-9a-f]{64}$/.test(c.hash) &&
      typeof c.at === 'string' &&
      (c.sig === undefined || typeof c.sig === 'string')
    ) {
      const checkpoint = c as Checkpoint;
      return { seq: checkpoint.seq, hash: checkpoint.hash, logId: checkpoint.logId, checkpoint };
    }
  }
  throw new KillSwitchError(
    ErrorCode.INVALID_INPUT,
    'expected head: give <seq>:<hash> (64 lowercase hex digits) or a checkpoint { logId, seq, hash, at, sig? } as JSON',
  );
}

/**
 * Compares a log with a head kept elsewhere (KS-17.7.4): the log must hold a record at the
 * expected seq with the expected hash (it may have grown since).
 *
 * @returns undefined when it does, else why not
 */
export function headMismatch(
  records: readonly { readonly seq: number; readonly hash: string }[],
  expected: ExpectedHead,
): string | undefined {
  if (expected.seq === 0) return undefined;
  const last = records.at(-1)?.seq ?? 0;
  if (last < expected.seq) {
    return `the log ends at seq ${last}, before the expected head seq ${expected.seq}: records were cut from its end, or it is another log`;
  }
  const r = records.find((x) => x.seq === expected.seq);
  if (r === undefined) return `the log has no record at seq ${expected.seq}`;
  if (r.hash !== expected.hash) {
    return `the record at seq ${expected.seq} has hash ${r.hash}, not the expected ${expected.hash}: history was rewritten, or it is another log`;
  }
  return undefined;
}
