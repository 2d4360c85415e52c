import { z } from 'zod';

/**
 * The characters an id may use (worker ids, flip ids, token names): letters, digits and
 * `._:@/+=-`. No white space, no quoting, nothing a log line or a header would need to escape.
 * This file is the ground layer of the protocol: it imports only zod, so the model (flip
 * records, selectors) and the auth module use the same rules as the wire.
 */
export const ID_CHARACTERS = 'A-Za-z0-9._:@/+=-';

/** A whole string of {@link ID_CHARACTERS}, at least one. */
export const ID_PATTERN = new RegExp(`^[${ID_CHARACTERS}]+$`);

/** The message every id check gives. */
export const ID_ALPHABET_MESSAGE = 'must use only letters, digits and ._:@/+=-';

/**
 * C0 control characters and DEL. Text the server keeps and shows (releases, selector values)
 * must not hold them: they rewrite terminal output and split log lines.
 */
// The one control-character regex of the project; every other check calls hasControlCharacters.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** True when `s` holds a C0 control character or DEL. */
export function hasControlCharacters(s: string): boolean {
  return CONTROL_CHARACTERS.test(s);
}

/** True when `v` is an id of 1 to `max` characters ({@link ID_PATTERN}); the fast paths use it. */
export function isIdText(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= max && ID_PATTERN.test(v);
}

/** True when `v` is text of 1 to `max` characters with no control character. */
export function isSafeText(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= max && !hasControlCharacters(v);
}

/**
 * zod schema of an id: 1 to `max` characters of {@link ID_CHARACTERS}.
 *
 * @example idText(128).parse('worker-1')
 */
export function idText(max: number): z.ZodString {
  return z
    .string()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .regex(ID_PATTERN, ID_ALPHABET_MESSAGE);
}

/**
 * zod schema of short text shown back to people (a release name): 1 to `max` characters, no
 * control character.
 */
export function safeText(max: number): z.ZodType<string> {
  return z
    .string()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !hasControlCharacters(s), 'must not contain control characters');
}
