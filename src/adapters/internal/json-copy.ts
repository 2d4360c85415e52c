/** Returned by `copy` when the value is not plain JSON data: the round trip decides. */
const NOT_PLAIN: unique symbol = Symbol('not plain JSON');

/** Deeper values go through the round trip (which also reports a cycle as it always did). */
const MAX_DEPTH = 64;

/**
 * `JSON.parse(JSON.stringify(value))`, without the text in between for plain JSON data: a tool's
 * result is copied for the ledger on every guarded call (so the record is detached from the
 * caller's object), and the round trip through a string was the largest single cost of recording
 * it. Plain data (strings, finite numbers, booleans, null, arrays and plain objects, nothing with
 * `toJSON`) is copied by a walk that builds what the round trip would build: `undefined` object
 * fields left out, `-0` as `0`, keys in the same order. Anything else (a `Date`, a class
 * instance, `NaN`, an `undefined` array item, a `__proto__` key, a cycle, a `BigInt`) goes
 * through the round trip itself, so the answer (or the error) is always the round trip's.
 *
 * @returns the copy; undefined when `JSON.stringify` gives undefined (`undefined`, a function)
 * @throws what `JSON.stringify` throws (a cycle, a `BigInt`)
 */
export function jsonCopy(value: unknown): unknown {
  const out = copy(value, 0);
  if (out !== NOT_PLAIN) return out;
  const text = JSON.stringify(value);
  return text === undefined ? undefined : (JSON.parse(text) as unknown);
}

function copy(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      // NaN and the infinities become null in JSON; -0 becomes 0.
      return Number.isFinite(v) ? (v === 0 ? 0 : v) : NOT_PLAIN;
    case 'object':
      break;
    default:
      // undefined, a function, a symbol (left out or null, by position) or a BigInt (throws).
      return NOT_PLAIN;
  }
  if (v === null) return null;
  if (depth >= MAX_DEPTH) return NOT_PLAIN;
  if (Array.isArray(v)) {
    if (Object.getPrototypeOf(v) !== Array.prototype || 'toJSON' in v) return NOT_PLAIN;
    const n = v.length;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) {
      // A hole or an undefined item becomes null in JSON: left to the round trip.
      const x = copy(v[i], depth + 1);
      if (x === NOT_PLAIN) return NOT_PLAIN;
      out[i] = x;
    }
    return out;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if ((proto !== Object.prototype && proto !== null) || 'toJSON' in v) return NOT_PLAIN;
  const out: Record<string, unknown> = {};
  // The keys JSON.stringify serialises, in its order: own, enumerable, string-keyed.
  for (const k of Object.keys(v)) {
    // JSON.parse makes `__proto__` an own property; an assignment would set the prototype.
    if (k === '__proto__') return NOT_PLAIN;
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined) continue;
    const c = copy(x, depth + 1);
    if (c === NOT_PLAIN) return NOT_PLAIN;
    out[k] = c;
  }
  return out;
}
