/**
 * Escapes every character that would rewrite a terminal or split a line, so text taken from the
 * flip log, the server or a worker prints as one inert line: C0 controls and DEL (a newline in a
 * reason forged a whole `killswitch log` line; ANSI escapes recoloured the terminal), C1
 * controls, the Unicode line and paragraph separators, and the bidirectional overrides that
 * reorder what a reader sees. `\n`, `\r` and `\t` print as such, others as `\xHH` or `\uHHHH`.
 * Everything else, backslashes included, is left as it is. KS-5.3.7
 *
 * @example escapeText('fixed\n#99 halt global') // 'fixed\\n#99 halt global'
 */
export function escapeText(s: string): string {
  let out: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isEscaped(c)) {
      if (out !== undefined) out += s[i];
      continue;
    }
    out ??= s.slice(0, i);
    out += c === 10 ? '\\n' : c === 13 ? '\\r' : c === 9 ? '\\t' : hex(c);
  }
  return out ?? s;
}

function isEscaped(c: number): boolean {
  return (
    c < 0x20 ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x061c ||
    c === 0x200e ||
    c === 0x200f ||
    (c >= 0x2028 && c <= 0x202e) ||
    (c >= 0x2066 && c <= 0x2069)
  );
}

function hex(c: number): string {
  return c <= 0xff
    ? `\\x${c.toString(16).padStart(2, '0')}`
    : `\\u${c.toString(16).padStart(4, '0')}`;
}
