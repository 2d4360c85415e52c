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
export function parseQuery<S extends z.ZodType>(
  schema: S,
  url: Pick<URL, 'search' | 'searchParams'>,
  what: string,
): z.output<S> {
  // Most requests carry no query: its answer is the schema's for {} (validated once per schema).
  if (url.search === '') {
    let empty = emptyQueries.get(schema);
    if (empty === undefined) {
      const r = schema.safeParse({});
      empty = r.success ? { ok: true, value: r.data } : { ok: false, error: r.error };
      emptyQueries.set(schema, empty);
    }
    if (empty.ok) return empty.value as z.output<S>;
    throw new ValidationError(what, toIssues(empty.error));
  }
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

/** Each query schema's answer for an empty query. */
const emptyQueries = new WeakMap<
  z.ZodType,
  { ok: true; value: unknown } | { ok: false; error: z.ZodError }
>();

/** The bytes of several chunks. */
export function byteLength(chunks: readonly Buffer[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}
