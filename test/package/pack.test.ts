import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

interface PackageJson {
  scripts: Record<string, string>;
  license: string;
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string } | string>;
}

describe('KS-16.1.2 npm pack builds first and ships every entry point', () => {
  it('prepack runs the build, and the packed files hold every export target and the bin', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as PackageJson;
    expect(pkg.scripts['prepack']).toBe('npm run build');
    // --ignore-scripts: list what would be packed from the dist the test run already built.
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    const files = new Set(
      (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path),
    );
    const targets = [
      ...Object.values(pkg.bin),
      ...Object.values(pkg.exports).flatMap((e) =>
        typeof e === 'string' ? [e] : [e.types, e.default],
      ),
    ].map((p) => p.replace(/^\.\//, ''));
    expect(targets.length).toBeGreaterThan(10);
    expect(targets.filter((t) => !files.has(t))).toEqual([]);
    // Nothing of the tests, benches or examples ships.
    expect([...files].filter((f) => /^dist\/(test|bench|examples)\//.test(f))).toEqual([]);
    // Issue 15: the license package.json names ships as a file (Apache-2.0).
    expect(files.has('LICENSE')).toBe(true);
    expect(pkg.license).toBe('Apache-2.0');
    expect(await readFile('LICENSE', 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
  }, 60_000);
});
