import type { z } from 'zod';
import { Role, type Principal } from '../../auth/principal.js';
import { ValidationError } from '../../errors.js';
import { toIssues } from '../../internal/zod-issues.js';

/** The caller of every route when the control plane runs with `auth: 'none'` (KS-17.9.1). */
export const ANONYMOUS: Principal = Object.freeze({
  name: 'anonymous',
  role: Role.ADMIN,
  scopes: [],
  resume: true,
});

/**
 * A request's query string, validated by `schema`; a parameter given twice is refused.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` with the issues listed
 */
export function parseQuery<S extends z.ZodType>(schema: S, url: URL, what: string): z.output<S> {
  const obj: Record<string, string> = {};
  const issues: { path: string[]; message: string }[] = [];
  for (const [k, v] of url.searchParams) {
    if (Object.hasOwn(obj, k)) issues.push({ path: [k], message: 'given more than once' });
    obj[k] = v;
  }
  if (issues.length > 0) throw new ValidationError(what, issues);
  const r = schema.safeParse(obj);
  if (!r.success) throw new ValidationError(what, toIssues(r.error));
  return r.data;
}

/** The bytes of several chunks. */
export function byteLength(chunks: readonly Buffer[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}
