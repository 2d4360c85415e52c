import { InvalidOptionError, LogCorruptError } from '../../src/errors.js';
import { checkRecordSignature } from '../../src/integrity/record-signatures.js';
import { PublicKeyRing } from '../../src/integrity/signing-key.js';
import { ackAnswerStatement, snapshotStatement } from '../../src/integrity/statements.js';
import type { FlipRecord } from '../../src/model/flip-record.js';
import { StreamEvent, sigDataSchema, type SigData } from '../../src/protocol/stream-events.js';

/** Rings built from the same PEM texts are shared, so the sources of a process share a cache. */
const rings = new Map<string, PublicKeyRing>();

/** Record signatures checked in this process: every source receives the same record object. */
const checkedRecords = new WeakMap<FlipRecord, { sig: string; ring: PublicKeyRing; ok: boolean }>();

/** The last acknowledgement answer checked: every member of a batch receives the same answer. */
let lastAckAnswer:
  { nonce: string; sig: string; text: string; ring: PublicKeyRing; ok: boolean } | undefined;

/** The last snapshot checked: every source of a process opening at one seq receives the same bytes. */
let lastSnapshot: { data: string; sig: string; ring: PublicKeyRing; ok: boolean } | undefined;

/**
 * The public keys of the `publicKeys` option: one PEM text (which may hold several keys) or a
 * list of them.
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` naming `publicKeys` for anything else
 */
export function publicKeyRingOf(option: unknown): PublicKeyRing {
  const texts =
    typeof option === 'string'
      ? [option]
      : Array.isArray(option) && option.every((t) => typeof t === 'string')
        ? (option as string[])
        : undefined;
  if (texts === undefined || texts.length === 0) {
    throw new InvalidOptionError('publicKeys', 'PEM public key text(s)', option);
  }
  const pems = texts.flatMap(
    (t) => t.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [],
  );
  if (pems.length === 0) {
    throw new InvalidOptionError('publicKeys', 'PEM public key text(s)', '(no PEM public key)');
  }
  const key = pems.join('\n');
  let ring = rings.get(key);
  if (ring === undefined) {
    try {
      ring = PublicKeyRing.fromPem(pems);
    } catch (err) {
      throw new InvalidOptionError('publicKeys', 'Ed25519 public keys', (err as Error).message);
    }
    rings.set(key, ring);
  }
  return ring;
}

/**
 * A worker's check of the signatures on its stream (KS-17.7.9): each `flip` and `snapshot` event
 * must come right after a `sig` event for it, whose signature verifies under one of the keys:
 * a record's as stored by the key holder (KS-17.7.2), a snapshot's by the control plane that
 * sends it. One per source, following its current connection ({@link StreamSignatures.attach}).
 */
export class StreamSignatures {
  readonly #ring: PublicKeyRing;
  /** The `sig` event received last, waiting for the event it signs. */
  #pending: SigData | undefined;

  constructor(ring: PublicKeyRing) {
    this.#ring = ring;
  }

  /**
   * Follows a new connection's events: its `sig` events, and after each `flip` or `snapshot`
   * event (once the source's own listener, registered before, has run) the pending signature is
   * dropped, so a signature signs only the event right after it, checked or not. Nothing received
   * on an older connection signs anything on this one.
   */
  attach(es: {
    addEventListener(type: string, listener: (ev: { readonly data: string }) => void): void;
  }): void {
    this.#pending = undefined;
    es.addEventListener(StreamEvent.SIG, (ev) => this.#onSig(ev.data));
    const drop = () => {
      this.#pending = undefined;
    };
    es.addEventListener(StreamEvent.FLIP, drop);
    es.addEventListener(StreamEvent.SNAPSHOT, drop);
  }

  /** A `sig` event: kept for the next event. A malformed one signs nothing. */
  #onSig(data: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      raw = undefined;
    }
    const r = sigDataSchema.safeParse(raw);
    this.#pending = r.success ? r.data : undefined;
  }

  /**
   * Why a snapshot event's data (exactly as received) may not be applied, or undefined when its
   * signature verifies.
   */
  snapshotFault(data: string, seq: number): string | undefined {
    const sig = this.#take('snapshot', seq);
    if (sig === undefined) {
      return `snapshot at seq ${seq} is not signed, and this worker holds public keys (KS-17.7.9)`;
    }
    let ok: boolean;
    if (lastSnapshot?.data === data && lastSnapshot.sig === sig && lastSnapshot.ring === this.#ring)
      ok = lastSnapshot.ok;
    else {
      ok = this.#ring.verify(snapshotStatement(data), sig);
      lastSnapshot = { data, sig, ring: this.#ring, ok };
    }
    return ok
      ? undefined
      : `snapshot at seq ${seq}: signature does not verify under the known keys (${this.#ring.kids.join(', ')}) (KS-17.7.9)`;
  }

  /**
   * Why a record may not be applied (naming its seq), or undefined when its signature verifies
   * for the log `logId`, by the `sig` event received right before this flip event.
   */
  flipFault(record: FlipRecord, logId: string): string | undefined {
    const sig = this.#take('flip', record.seq);
    const seen = checkedRecords.get(record);
    if (sig !== undefined && seen?.sig === sig && seen.ring === this.#ring) {
      return seen.ok ? undefined : `record seq ${record.seq}: signature does not verify`;
    }
    try {
      checkRecordSignature({ seq: record.seq, hash: record.hash, sig }, logId, this.#ring);
    } catch (err) {
      if (sig !== undefined) checkedRecords.set(record, { sig, ring: this.#ring, ok: false });
      return err instanceof LogCorruptError
        ? `record seq ${record.seq}: ${err.message.replace(/^flip log corrupt at seq \d+: /, '')}`
        : (err as Error).message;
    }
    checkedRecords.set(record, { sig: sig!, ring: this.#ring, ok: true });
    return undefined;
  }

  /**
   * Why an acknowledgement answer may not renew the lease (KS-17.7.10), or undefined when it is
   * signed over the nonce this worker's request carried by one of the keys. Without that, an
   * answer from whoever sits on the path (the control plane long gone) would renew the lease
   * forever while withholding flips.
   */
  ackAnswerFault(
    answer: {
      readonly logId: string;
      readonly head: number;
      readonly hash: string;
      readonly staleAfterMs: number;
      readonly sig?: string | undefined;
    },
    nonce: string | undefined,
  ): string | undefined {
    if (nonce === undefined) return 'the acknowledgement carried no nonce to sign (KS-17.7.10)';
    if (answer.sig === undefined) {
      return 'the answer is not signed, and this worker holds public keys (KS-17.7.10)';
    }
    const text = `${answer.logId}\n${answer.head}\n${answer.hash}\n${answer.staleAfterMs}`;
    const last = lastAckAnswer;
    let ok: boolean;
    if (
      last !== undefined &&
      last.nonce === nonce &&
      last.sig === answer.sig &&
      last.text === text &&
      last.ring === this.#ring
    ) {
      ok = last.ok;
    } else {
      ok = this.#ring.verify(ackAnswerStatement(nonce, answer), answer.sig);
      lastAckAnswer = { nonce, sig: answer.sig, text, ring: this.#ring, ok };
    }
    return ok
      ? undefined
      : `the answer's signature does not verify for this acknowledgement under the known keys (${this.#ring.kids.join(', ')}): forged, or replayed from another (KS-17.7.10)`;
  }

  #take(of: SigData['of'], seq: number): string | undefined {
    const p = this.#pending;
    this.#pending = undefined;
    return p !== undefined && p.of === of && p.seq === seq ? p.sig : undefined;
  }
}
