import { z } from 'zod';
import { selectorSchema } from '../model/selector.js';
import { releaseNameSchema, workerIdSchema } from './acks.js';

/** Most a flip request may wait for the fleet. @default 30000 ms */
export const MAX_WAIT_MS = 30_000;

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
/** A parsed {@link flipRequestSchema}. */
export type FlipRequest = z.infer<typeof flipRequestSchema>;

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
