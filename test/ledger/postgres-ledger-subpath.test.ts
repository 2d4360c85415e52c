import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/** Every module the static imports of `entry` reach (type-only imports excluded), and the bare specifiers. */
async function graph(entry: string): Promise<{ files: Set<string>; packages: Set<string> }> {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [resolve(entry)];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const src = await readFile(file, 'utf8');
    // `import x from '…'`, `export … from '…'`; `import type` is erased and `import()` is lazy.
    const re =
      /^\s*(?:import|export)\s+(?!type\b)[^'";]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm;
    for (const m of src.matchAll(re)) {
      const spec = m[1] ?? m[2]!;
      if (spec.startsWith('.')) todo.push(join(dirname(file), spec.replace(/\.js$/, '.ts')));
      else packages.add(spec);
    }
  }
  return { files, packages };
}

describe('KS-10.3.4 the pg driver loads only through the postgres-ledger subpath', () => {
  it('the main entry reaches neither pg nor the PostgreSQL ledger; the subpath does', async () => {
    const main = await graph('src/index.ts');
    expect([...main.packages].filter((p) => p === 'pg' || p.startsWith('pg/'))).toEqual([]);
    expect([...main.files].some((f) => f.includes('postgres'))).toBe(false);
    const sub = await graph('providers/postgres-ledger/index.ts');
    expect(sub.packages.has('pg')).toBe(true);
  });
});
