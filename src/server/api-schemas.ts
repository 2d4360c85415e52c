import { z } from 'zod';
import { selectorSchema } from '../model/selector.js';

/** Most a flip request may wait for the fleet. @default 30000 ms */
export const MAX_WAIT_MS = 30_000;

const workerIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'must be at most 128 characters')
  .regex(/^[A-Za-z0-9._:@/+=-]+$/, 'must use only letters, digits and ._:@/+=-');

const releaseSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  // eslint-disable-next-line no-control-regex
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters');

/**
 * Body of `POST /v1/flips`. The actor is the token's name, never the body's (a body naming an
 * actor is refused). KS-5.1.1
 */
export const flipRequestSchema = z.strictObject({
  action: z.enum(['halt', 'resume']),
  selector: selectorSchema,
  reason: z.string(),
  mode: z.enum(['discard', 'hold', 'drain']).optional(),
  id: z.string().optional(),
  release: z.string().optional(),
  source: z.string().optional(),
  /** Wait up to this many ms for the fleet to stop. */
  wait: z.number().int().min(0).max(MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS} ms`).optional(),
});
export type FlipRequest = z.infer<typeof flipRequestSchema>;

/** Body of `POST /v1/acks`. KS-6.2 */
export const ackRequestSchema = z.strictObject({
  workerId: workerIdSchema,
  release: releaseSchema.optional(),
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type AckRequest = z.infer<typeof ackRequestSchema>;

const WORKER_ID_RE = /^[A-Za-z0-9._:@/+=-]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * Validates one acknowledgement: a hand-written check that accepts only what
 * {@link ackRequestSchema} accepts, with zod deciding (and explaining) everything else. A batch
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
    if (k !== 'workerId' && k !== 'seq' && k !== 'release') return undefined;
    n++;
  }
  const { workerId, seq, release } = o;
  if (
    typeof workerId !== 'string' ||
    workerId.length < 1 ||
    workerId.length > 128 ||
    !WORKER_ID_RE.test(workerId)
  )
    return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  if (release === undefined) {
    // An own property holding undefined is not something JSON produces: leave it to zod.
    return n === 2 ? { workerId, seq } : undefined;
  }
  if (
    typeof release !== 'string' ||
    release.length < 1 ||
    release.length > 200 ||
    CONTROL_RE.test(release)
  )
    return undefined;
  return { workerId, release, seq };
}

const intParam = (def: number, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .optional()
    .transform((v) => v ?? def);

/** Query of `GET /v1/flips`. */
export const logQuerySchema = z.strictObject({
  after: intParam(0, 0, Number.MAX_SAFE_INTEGER),
  limit: intParam(100, 1, 1000),
});

/** Query of `GET /v1/stream`. KS-6.1 */
export const streamQuerySchema = z.strictObject({
  worker: workerIdSchema.optional(),
  release: releaseSchema.optional(),
  snapshot: z.enum(['0', '1']).optional(),
});
