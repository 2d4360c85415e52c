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
