import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import {
  flipInputShape,
  parseFlipInput,
  refineFlipInput,
  tryParseFlipFields,
  type NormalizedFlip,
} from '../model/flip-record.js';
import { releaseNameSchema, workerIdSchema } from './acks.js';

/** Most a flip request may wait for the fleet. @default 30000 ms */
export const MAX_WAIT_MS = 30_000;

/**
 * Query of `POST /v1/flips`: `wait` (ms) may be given here instead of in the body, validated as
 * the body's; any other parameter is refused, so nothing in the query is silently ignored.
 * KS-5.1.14
 */
export const flipQuerySchema = z.strictObject({
  wait: z
    .string()
    .regex(/^\d{1,9}$/, 'must be a non-negative integer (ms)')
    .transform(Number)
    .pipe(z.number().int().min(0).max(MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS} ms`))
    .optional(),
});

const { actor: _actor, ...requestFields } = flipInputShape;
const waitSchema = z
  .number()
  .int()
  .min(0)
  .max(MAX_WAIT_MS, `must be at most ${MAX_WAIT_MS} ms`)
  .optional();

/**
 * Body of `POST /v1/flips`: the model's flip input (same fields, same rules) without the actor,
 * which is the token's name, never the body's (a body naming an actor is refused), plus `wait`.
 * KS-5.1.1
 */
export const flipRequestSchema = z
  .strictObject({
    ...requestFields,
    /** Wait up to this many ms for the fleet to stop. */
    wait: waitSchema,
    /**
     * An admin's resume past the release gate, with the reason recorded in the release file
     * (KS-17.2.3).
     */
    overrideGate: z.string().trim().min(1, 'must not be empty').max(1024).optional(),
  })
  .superRefine(refineFlipInput);
/** A parsed {@link flipRequestSchema}. */
export type FlipRequest = z.infer<typeof flipRequestSchema>;

/**
 * Validates a `POST /v1/flips` body once: the flip (validated, defaults applied, frozen, so the
 * store does not check it again) acted by `actor`, and how long to wait for the fleet.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` listing every issue of the body (and of the
 *   actor, should the token's name not be a valid actor)
 */
export function parseFlipRequest(
  raw: unknown,
  actor: string,
): {
  readonly flip: NormalizedFlip;
  readonly wait: number | undefined;
  readonly overrideGate?: string | undefined;
} {
  // The fast path: a plain body whose fields pass the model's own hand-written check.
  if (
    typeof raw === 'object' &&
    raw !== null &&
    !Array.isArray(raw) &&
    Object.getPrototypeOf(raw) === Object.prototype &&
    !Object.hasOwn(raw, 'actor') &&
    !Object.hasOwn(raw, 'overrideGate')
  ) {
    const wait = (raw as Record<string, unknown>)['wait'];
    if (
      wait === undefined ||
      (typeof wait === 'number' && Number.isSafeInteger(wait) && wait >= 0 && wait <= MAX_WAIT_MS)
    ) {
      // The body's fields with the token's name as actor, `wait` aside, checked in place.
      const flip = tryParseFlipFields(raw, actor, 'wait');
      if (flip !== undefined) return { flip, wait: wait as number | undefined };
    }
  }
  // zod decides what the fast path did not accept, and says why.
  const r = flipRequestSchema.safeParse(raw);
  if (!r.success) throw new ValidationError('flip request', toIssues(r.error));
  const { wait, overrideGate, ...fields } = r.data;
  return { flip: parseFlipInput({ ...fields, actor }), wait, overrideGate };
}

const intParam = (def: number, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .optional()
    .transform((v) => v ?? def);

/** Query of `GET /v1/flips`. KS-5.1.2 */
export const logQuerySchema = z.strictObject({
  after: intParam(0, 0, Number.MAX_SAFE_INTEGER),
  limit: intParam(100, 1, 1000),
});

/** Query of `GET /v1/stream`. KS-6.1 */
export const streamQuerySchema = z.strictObject({
  worker: workerIdSchema.optional(),
  release: releaseNameSchema.optional(),
  snapshot: z.enum(['0', '1']).optional(),
});
