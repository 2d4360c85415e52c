import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import { labelTimeSchema } from './answers.js';
import { hashSchema, logIdSchema, MAX_LOG_ID_LENGTH } from './log-position.js';
import { idText, isIdText, isSafeText, safeText } from './text.js';

/** Longest worker id. */
export const MAX_WORKER_ID_LENGTH = 128;
/** Longest release name. */
export const MAX_RELEASE_LENGTH = 200;
/**
 * An acknowledgement batch's nonce (KS-17.7.10): 16 to 64 base64url characters the worker picks
 * at random per request, signed back in the answer.
 */
export const ACK_NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
/** Most entries in one batched acknowledgement (KS-6.2.6). */
export const MAX_ACK_BATCH = 10_000;
/** Most flips one acknowledgement may report as not enforced (KS-6.5). */
export const MAX_UNENFORCED = 100;
/** Longest reason of a negative acknowledgement. */
export const MAX_UNENFORCED_REASON_LENGTH = 500;

/**
 * One negative acknowledgement (KS-6.5.1): the flip at `seq` was received, but this enforcement
 * point cannot enforce it, and `reason` says why (a gateway whose upstream cannot be cut, a
 * worker whose guard is not installed for that scope).
 */
export const unenforcedSchema = z.strictObject({
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  reason: safeText(MAX_UNENFORCED_REASON_LENGTH),
});
/** A parsed {@link unenforcedSchema}. */
export type Unenforced = z.infer<typeof unenforcedSchema>;

/** zod schema of a worker id (acks, `GET /v1/stream?worker=`). */
export const workerIdSchema = idText(MAX_WORKER_ID_LENGTH);
/** zod schema of a release name a worker reports. */
export const releaseNameSchema = safeText(MAX_RELEASE_LENGTH);

/** Most match reports in one acknowledgement entry. */
export const MAX_MATCH_REPORTS = 16;
/** Most near-miss values a match report names. */
export const MAX_SIMILAR = 3;

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * What a worker's process had that a halt matched when it applied the halt (KS-16.4.1): its
 * guarded effects in flight, its queued tasks' contexts, and the distinct contexts it evaluated
 * recently; and, when nothing matched, up to {@link MAX_SIMILAR} values it did see that are
 * close to the halt's (`ACME` for `acme`), to say "did you mean".
 */
export const matchReportSchema = z.strictObject({
  seq: count,
  inFlight: count,
  queued: count,
  recent: count,
  similar: z.array(z.string().min(1).max(256)).max(MAX_SIMILAR).optional(),
});
/** A parsed {@link matchReportSchema}. */
export type MatchReport = z.infer<typeof matchReportSchema>;

/** Most seams a gateway reports. */
export const MAX_GATEWAY_SEAMS = 8;

/**
 * What a gateway (KS-15) says about itself with each acknowledgement (KS-15.5.3): the seams it
 * enforces at and the calls in flight at each, as of the acknowledgement. The console shows the
 * member as a gateway from it. An ordinary worker sends none.
 */
export const gatewayReportSchema = z.strictObject({
  seams: z
    .array(z.strictObject({ seam: idText(32), inFlight: count }))
    .min(1)
    .max(MAX_GATEWAY_SEAMS),
});
/** A parsed {@link gatewayReportSchema}. */
export type GatewayReport = z.infer<typeof gatewayReportSchema>;

/**
 * Body of `POST /v1/acks`. KS-6.2. `logId` and `hash` (the log and the hash of the record at
 * `seq` the worker applied, KS-6.4.3) let the server refuse a worker on another log and notice
 * that its own log moved backwards; both or neither.
 */
export const ackRequestSchema = z
  .strictObject({
    workerId: workerIdSchema,
    release: releaseNameSchema.optional(),
    seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    logId: logIdSchema.optional(),
    hash: hashSchema.optional(),
    /** Optional: per halt applied since the last acknowledgement, what it matched. KS-16.4.1 */
    matched: z.array(matchReportSchema).max(MAX_MATCH_REPORTS).optional(),
    /** KS-6.5.1 flips received (seq <= `seq`) that this enforcement point cannot enforce. */
    unenforced: z.array(unenforcedSchema).min(1).max(MAX_UNENFORCED).optional(),
    /** KS-15.5.3 sent by a gateway: its seams and the calls in flight at each. */
    gateway: gatewayReportSchema.optional(),
  })
  .refine((a) => (a.logId === undefined) === (a.hash === undefined), {
    message: 'logId and hash go together',
    path: ['hash'],
  })
  .refine((a) => (a.unenforced ?? []).every((u) => u.seq <= a.seq), {
    message: 'names a flip beyond the acknowledged seq (only flips received can be unenforced)',
    path: ['unenforced'],
  })
  .refine(
    (a) => new Set((a.unenforced ?? []).map((u) => u.seq)).size === (a.unenforced?.length ?? 0),
    {
      message: 'names a seq twice',
      path: ['unenforced'],
    },
  );
/** A parsed {@link ackRequestSchema}. */
export type AckRequest = z.infer<typeof ackRequestSchema>;

/**
 * Validates one acknowledgement: a hand-written check that accepts only what
 * {@link ackRequestSchema} accepts, with zod deciding (and explaining) everything else (the rare
 * entry with match reports included). A batch
 * from a process with a thousand subscribers holds a thousand entries per flip, and zod cost
 * about 1.8 us per entry there. test/server/ack-fast-path.test.ts checks the two agree.
 */
export function safeParseAck(
  input: unknown,
): { success: true; data: AckRequest } | { success: false; error: z.ZodError } {
  const fast = fastAck(input);
  if (fast !== undefined) return { success: true, data: fast };
  const r = ackRequestSchema.safeParse(input);
  return r.success ? { success: true, data: r.data } : { success: false, error: r.error };
}

function fastAck(input: unknown): AckRequest | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return undefined;
  if (Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  const o = input as Record<string, unknown>;
  let n = 0;
  for (const k in o) {
    if (k !== 'workerId' && k !== 'seq' && k !== 'release' && k !== 'logId' && k !== 'hash')
      return undefined;
    n++;
  }
  const { workerId, seq, release, logId, hash } = o;
  if (!isIdText(workerId, MAX_WORKER_ID_LENGTH)) return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  // An own property holding undefined is not something JSON produces: leave it to zod.
  let expected = 2;
  const out: { workerId: string; seq: number; release?: string; logId?: string; hash?: string } = {
    workerId,
    seq,
  };
  if (release !== undefined) {
    if (!isSafeText(release, MAX_RELEASE_LENGTH)) return undefined;
    out.release = release;
    expected++;
  }
  if (logId !== undefined || hash !== undefined) {
    if (!isIdText(logId, MAX_LOG_ID_LENGTH)) return undefined;
    if (typeof hash !== 'string' || !HEX64.test(hash)) return undefined;
    out.logId = logId;
    out.hash = hash;
    expected += 2;
  }
  return n === expected ? out : undefined;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Validates a `POST /v1/acks` body: `{ workerId, release?, seq }` or `{ acks: [ ...those ] }`
 * with 1 to {@link MAX_ACK_BATCH} entries naming distinct workers (a worker twice would make the
 * order of its entries matter). Any bad entry refuses the whole batch. KS-6.2, KS-6.2.6
 *
 * @returns the entries, in order (one for the single form)
 * @throws {ValidationError} `KS_INVALID_INPUT`, paths pointing into the batch
 */
export function parseAcks(raw: unknown): AckRequest[] {
  return parseAckBody(raw).acks;
}

/**
 * {@link parseAcks}, and the batch's `nonce` (KS-17.7.10): `{ acks: [...], nonce? }`, the nonce
 * {@link ACK_NONCE_RE}, asks the control plane to sign its answer over it.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT`, paths pointing into the batch
 */
export function parseAckBody(raw: unknown): { acks: AckRequest[]; nonce: string | undefined } {
  if (raw === null || typeof raw !== 'object' || !Object.hasOwn(raw, 'acks')) {
    const parsed = safeParseAck(raw);
    if (!parsed.success) throw new ValidationError('ack', toIssues(parsed.error));
    return { acks: [parsed.data], nonce: undefined };
  }
  const keys = Object.keys(raw);
  const list = (raw as { acks: unknown }).acks;
  const nonce = (raw as { nonce?: unknown }).nonce;
  const withNonce = Object.hasOwn(raw, 'nonce');
  if (withNonce && (typeof nonce !== 'string' || !ACK_NONCE_RE.test(nonce))) {
    throw new ValidationError('ack batch', [
      { path: ['nonce'], message: 'must be 16 to 64 base64url characters' },
    ]);
  }
  if (keys.length !== (withNonce ? 2 : 1) || !Array.isArray(list) || list.length === 0) {
    throw new ValidationError('ack batch', [
      {
        path: ['acks'],
        message: 'must be the only field besides nonce: a non-empty array of acknowledgements',
      },
    ]);
  }
  if (list.length > MAX_ACK_BATCH) {
    throw new ValidationError('ack batch', [
      { path: ['acks'], message: `must hold at most ${MAX_ACK_BATCH} acknowledgements` },
    ]);
  }
  const out: AckRequest[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < list.length; i++) {
    const parsed = safeParseAck(list[i]);
    if (!parsed.success) {
      throw new ValidationError(
        'ack batch',
        toIssues(parsed.error).map((x) => ({ ...x, path: ['acks', i, ...x.path] })),
      );
    }
    if (seen.has(parsed.data.workerId)) {
      throw new ValidationError('ack batch', [
        { path: ['acks', i, 'workerId'], message: 'names a worker already in the batch' },
      ]);
    }
    seen.add(parsed.data.workerId);
    out.push(parsed.data);
  }
  return { acks: out, nonce: withNonce ? (nonce as string) : undefined };
}

/**
 * zod schema of the `POST /v1/acks` answer as a worker checks it (KS-6.2): fields added later
 * are allowed, so an older worker keeps reading a newer server's answers.
 */
export const ackAnswerSchema = z.object({
  head: z.number().int().min(0),
  // An ISO 8601 label (KS-5.1.15; epoch ms from control planes before it): a worker never reads
  // it for its lease (KS-6.3.11), so either is accepted and an upgrade order does not matter.
  serverTime: labelTimeSchema,
  staleAfterMs: z.number().int().positive(),
  /** KS-6.4.1 the server's log and the hash of its head record. */
  logId: logIdSchema,
  hash: hashSchema,
  /** KS-17.7.10 the signature over the worker's nonce and the answer, when the server holds a key. */
  sig: z.string().min(1).max(256).optional(),
});
