import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('KS-2.6.1 every flip-log store runs the conformance suite', () => {
  it('each class that implements FlipLogStore has a test file that runs describeFlipLogStoreConformance with it', async () => {
    const stores: string[] = [];
    for (const f of [...(await files('providers')), ...(await files('src'))]) {
      for (const m of (await readFile(f, 'utf8')).matchAll(
        /class (\w+) implements [^{]*\bFlipLogStore\b/g,
      ))
        stores.push(m[1]!);
    }
    expect(stores).toEqual(
      expect.arrayContaining(['MemoryFlipLogStore', 'FileFlipLogStore', 'PostgresFlipLogStore']),
    );
    const suites: string[] = [];
    for (const f of await files('test')) {
      const text = await readFile(f, 'utf8');
      if (text.includes('describeFlipLogStoreConformance(')) suites.push(text);
    }
    const unchecked = stores.filter((s) => !suites.some((t) => new RegExp(`new ${s}\\b`).test(t)));
    expect(unchecked, 'stores no conformance run constructs').toEqual([]);
  });
});
