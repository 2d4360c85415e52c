/**
 * Drops the members whose value is `undefined`, so optional fields are absent rather than present
 * and undefined (`exactOptionalPropertyTypes`, and JSON or a hash that must not see the key). The
 * caller names the type it builds, whose optional members are the ones that may be dropped.
 * Shallow: a nested object is stripped by its own call.
 *
 * @param o - the object to copy; not modified
 * @returns a new object without `undefined` members
 *
 * @example
 * ```ts
 * const r = stripUndefined<FlipRecord>({ ...parsed, mode: undefined }); // no `mode` key
 * ```
 */
export function stripUndefined<T extends object = Record<string, unknown>>(o: object): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}
