import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Requirements no test cites yet (a ratchet): the list only shrinks. A new requirement must come
 * with a test that names it; a requirement cited at last should leave this list (the test prints
 * those).
 */
const NOT_YET_CITED: string[] = [];

const ID = /KS-\d+\.\d+\.\d+/g;

async function files(dir: string, ext: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p, ext)));
    else if (e.name.endsWith(ext)) out.push(p);
  }
  return out;
}

/** Every numbered requirement (`- **KS-a.b.c**`) in spec/, with its file. */
async function requirements(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of (await readdir('spec')).filter((n) => /^KS-\d+.*\.md$/.test(n))) {
    const text = await readFile(join('spec', f), 'utf8');
    for (const m of text.matchAll(/\*\*(KS-\d+\.\d+\.\d+)\*\*/g)) out.set(m[1]!, f);
  }
  return out;
}

/**
 * Every requirement id a test file names (this file's list excluded). The conformance suites every
 * backend runs live in src/testing/ (the `/testing` subpath): they are tests too.
 */
async function citations(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const f of [...(await files('test', '.ts')), ...(await files('src/testing', '.ts'))]) {
    if (f === join('test', 'spec', 'citations.test.ts')) continue;
    for (const m of (await readFile(f, 'utf8')).matchAll(ID)) out.add(m[0]);
  }
  return out;
}

describe('every numbered requirement in spec/ is cited by a test', () => {
  it('no requirement is uncited but those still listed', async () => {
    const reqs = await requirements();
    const cited = await citations();
    expect(reqs.size).toBeGreaterThan(300);
    const uncited = [...reqs.keys()].filter((id) => !cited.has(id));
    const listed = new Set(NOT_YET_CITED);
    const fresh = uncited.filter((id) => !listed.has(id)).map((id) => `${id} (${reqs.get(id)})`);
    expect(
      fresh,
      'requirements no test cites: name each in the title of the test that checks it',
    ).toEqual([]);
    // Cited meanwhile (by another change): drop them from the list when next editing it. Not a
    // failure, so a test that cites a requirement never breaks this one.
    const citedNow = NOT_YET_CITED.filter((id) => cited.has(id));
    if (citedNow.length > 0)
      console.log(`cited now, remove from NOT_YET_CITED: ${citedNow.join(', ')}`);
    expect(
      NOT_YET_CITED.filter((id) => !reqs.has(id)),
      'not a requirement in spec/ (renamed or removed): remove from NOT_YET_CITED',
    ).toEqual([]);
  });

  it("KS-1's selector, level and halt rules (KS-1.1 to KS-1.3) and KS-16 are cited in full", async () => {
    const reqs = await requirements();
    const cited = await citations();
    const gaps = [...reqs.keys()].filter((id) => /^KS-(1\.[123]|16)\./.test(id) && !cited.has(id));
    expect(gaps).toEqual([]);
  });
});
