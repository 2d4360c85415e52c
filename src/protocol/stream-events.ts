import { z } from 'zod';
import { recordJson, type FlipRecord } from '../model/flip-record.js';
import { ValidationError } from '../errors.js';
import type { KillSnapshot } from '../model/kill-state.js';
import { labelTimeSchema, type ApiTime } from './answers.js';
import { hashSchema, logIdSchema } from './log-position.js';
import { signatureOf } from '../integrity/record-signatures.js';

/**
 * The event names of `GET /v1/stream` (KS-6.1). The console's browser script cannot import this
 * module; test/protocol/console-events.test.ts keeps its names equal to these.
 */
export const StreamEvent = {
  /** The state: `{ seq, hash, halts }` with `id: <seq>`. KS-6.1.1 */
  SNAPSHOT: 'snapshot',
  /** One record with `id: <seq>`. KS-6.1.2 */
  FLIP: 'flip',
  /** `{ head, at }`, no id, every `heartbeatMs`. KS-6.1.3 */
  HEARTBEAT: 'heartbeat',
  /**
   * `{ of, seq, sig }`, no id: the signature of the `flip` or `snapshot` event that follows it in
   * the same write, when the log is signed (KS-17.7.9). Clients that do not check signatures
   * ignore it (an unknown event name), so it changes nothing for them.
   */
  SIG: 'sig',
  /**
   * `{ seq, hash }` with `id: <seq>`: a record this reader may not read (KS-17.4.1; streams of
   * operators and scoped viewers only): its position moves on, nothing is applied.
   */
  SKIP: 'skip',
} as const;
/** One of {@link StreamEvent}'s values. */
export type StreamEvent = (typeof StreamEvent)[keyof typeof StreamEvent];

/** Data of a `heartbeat` event. KS-6.1.3, KS-6.4.1 */
export interface HeartbeatData {
  /** The server's head seq. */
  readonly head: number;
  /** Server time, a label (ISO 8601, KS-5.1.15). */
  readonly at: ApiTime;
  /** The server's log. */
  readonly logId: string;
  /** Hash of the record at `head`. */
  readonly hash: string;
}

/** Data of a `snapshot` event: the kill state and the log it is of. KS-6.1.1, KS-6.4.1 */
export interface SnapshotData extends KillSnapshot {
  readonly logId: string;
}

/** Data of a `sig` event: the signature of the event that follows it. KS-17.7.9 */
export interface SigData {
  /** Which event it signs: the next `flip` (a record's stored signature) or `snapshot`. */
  readonly of: 'flip' | 'snapshot';
  /** That event's seq (its `id:`). */
  readonly seq: number;
  /** `"<kid>:<base64url>"` (KS-17.7.2 for a record, KS-17.7.9 for a snapshot). */
  readonly sig: string;
}

/** zod schema of a `sig` event's data, as a client checks it (fields added later are allowed). */
export const sigDataSchema = z.object({
  of: z.enum(['flip', 'snapshot']),
  seq: z.number().int().min(0),
  sig: z.string().min(1).max(256),
});

/**
 * zod schema of a heartbeat's data, as a client checks it: fields added later are allowed, so an
 * older client keeps reading a newer server's heartbeats.
 */
export const heartbeatSchema = z.object({
  head: z.number().int().min(0),
  // An ISO 8601 label; epoch ms from control planes before KS-5.1.15. Never read for a lease.
  at: labelTimeSchema,
  logId: logIdSchema,
  hash: hashSchema,
});

/**
 * Splits a snapshot event's data into its log id and the kill snapshot (which
 * `KillState.fromSnapshot` validates). KS-6.4.1
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` when the data is not an object or `logId` is missing or bad
 */
export function splitSnapshotData(data: unknown): { logId: string; snapshot: unknown } {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ValidationError('snapshot', [{ path: [], message: 'must be an object' }]);
  }
  const { logId, ...snapshot } = data as Record<string, unknown>;
  const r = logIdSchema.safeParse(logId);
  if (!r.success) {
    throw new ValidationError('snapshot', [
      { path: ['logId'], message: 'must name the log (an id)' },
    ]);
  }
  return { logId: r.data, snapshot };
}

/**
 * Encodes one SSE event. The data is one JSON line, so it never holds a newline.
 *
 * @param event - the event name
 * @param data - serialised with `JSON.stringify`
 * @param id - the `id:` field (the seq), when the event has one
 * @returns an exact-size buffer of its own
 * @example encodeEvent(StreamEvent.HEARTBEAT, { head: 3, at: new Date().toISOString(), logId, hash })
 */
export function encodeEvent(event: StreamEvent, data: unknown, id?: number): Buffer {
  return exactBuffer(
    `event: ${event}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`,
  );
}

/**
 * Encodes a record's `flip` event (`id:` its seq). The data is the record's canonical JSON, the
 * same string as its line in the file store, computed once per record ({@link recordJson}).
 * KS-6.1.2
 */
export function encodeFlipEvent(record: FlipRecord): Buffer {
  // KS-17.7.9 a signed record's signature goes first, in the same buffer (one write, one replay).
  const sig = signatureOf(record);
  return exactBuffer(
    `${sig === undefined ? '' : sigBlock('flip', record.seq, sig)}event: ${StreamEvent.FLIP}\nid: ${record.seq}\ndata: ${recordJson(record)}\n\n`,
  );
}

/**
 * Encodes a `snapshot` event (`id:` its seq), preceded by its `sig` event when `sign` is given:
 * `sign` receives the data exactly as sent and returns its signature (KS-17.7.9).
 */
export function encodeSnapshotEvent(data: SnapshotData, sign?: (json: string) => string): Buffer {
  const json = JSON.stringify(data);
  const sig = sign?.(json);
  return exactBuffer(
    `${sig === undefined ? '' : sigBlock('snapshot', data.seq, sig)}event: ${StreamEvent.SNAPSHOT}\nid: ${data.seq}\ndata: ${json}\n\n`,
  );
}

/**
 * Encodes a `skip` event for a record a scoped reader may not read (KS-17.4.1): its seq and
 * hash only, so the reader's position moves on without learning what the record says.
 */
export function encodeSkipEvent(record: { readonly seq: number; readonly hash: string }): Buffer {
  return exactBuffer(
    `event: ${StreamEvent.SKIP}\nid: ${record.seq}\ndata: ${JSON.stringify({ seq: record.seq, hash: record.hash })}\n\n`,
  );
}

function sigBlock(of: SigData['of'], seq: number, sig: string): string {
  const data: SigData = { of, seq, sig };
  return `event: ${StreamEvent.SIG}\ndata: ${JSON.stringify(data)}\n\n`;
}

const utf8 = new TextEncoder();

function exactBuffer(text: string): Buffer {
  // An exact-size buffer of its own, not a slice of Node's shared 8 KiB pool (`Buffer.from`): the
  // replay ring keeps flip events for up to 2 x maxReplay records, and a pooled slice keeps its
  // whole slab alive with it. The KS-13.7 soak measured ~5 KB retained per flip that way (about
  // 10 times the event), so ~100 MB once the ring is full at the default maxReplay.
  // TextEncoder.encode returns a fresh ArrayBuffer of exactly the encoded length, about five
  // times cheaper than Buffer.allocUnsafeSlow + write (test/protocol/stream-events.test.ts).
  const bytes = utf8.encode(text);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
