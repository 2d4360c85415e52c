import { readdir, readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(await readFile('package.json', 'utf8')) as {
  name: string;
  exports: Record<string, unknown>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};

/** Every import specifier of a TypeScript file (static, dynamic and `export ... from`). */
function specifiers(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g))
    out.push(m[1]!);
  for (const m of source.matchAll(/(?:^|[\s;])import\s+['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

/** The package a bare specifier names (`@scope/name/sub` -> `@scope/name`). */
function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

async function exampleFolders(): Promise<string[]> {
  return (await readdir('examples', { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

describe('KS-10.6.1 examples/ holds runnable folders that import only the public API, indexed by examples/README.md', () => {
  it('each folder is indexed in examples/README.md and has TypeScript to run', async () => {
    const index = await readFile('examples/README.md', 'utf8');
    const folders = await exampleFolders();
    expect(folders.length).toBeGreaterThan(3);
    for (const f of folders) {
      expect(index, `examples/README.md does not link ${f}/`).toContain(`](${f}/)`);
      const ts = (await readdir(join('examples', f))).filter((n) => n.endsWith('.ts'));
      expect(ts.length, `examples/${f} has no .ts file`).toBeGreaterThan(0);
    }
  });

  it("imports the package only by its name and its exports map's subpaths; local imports stay in the example's folder", async () => {
    const subpaths = new Set(
      Object.keys(pkg.exports).map((k) => (k === '.' ? pkg.name : `${pkg.name}/${k.slice(2)}`)),
    );
    const thirdParty = new Set([
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.devDependencies ?? {}),
      ...Object.keys(pkg.peerDependencies ?? {}),
    ]);
    const bad: string[] = [];
    let ours = 0;
    for (const f of await exampleFolders()) {
      for (const file of (await readdir(join('examples', f))).filter((n) => n.endsWith('.ts'))) {
        const where = `examples/${f}/${file}`;
        for (const spec of specifiers(await readFile(join('examples', f, file), 'utf8'))) {
          if (spec.startsWith('.')) {
            // Into another folder or the package's sources: not the public API.
            if (!spec.startsWith('./') || spec.includes('..')) bad.push(`${where}: ${spec}`);
          } else if (spec.startsWith('node:') || builtinModules.includes(spec)) {
            continue;
          } else if (packageOf(spec) === pkg.name) {
            ours++;
            if (!subpaths.has(spec)) bad.push(`${where}: ${spec} (not in the exports map)`);
          } else if (!thirdParty.has(packageOf(spec))) {
            bad.push(`${where}: ${spec} (not a dependency of the package)`);
          }
        }
      }
    }
    expect(bad).toEqual([]);
    expect(ours).toBeGreaterThan(10);
  });

  it('the import check catches what it must (control)', () => {
    expect(specifiers(`import { x } from '../../src/guard/index.js';`)).toEqual([
      '../../src/guard/index.js',
    ]);
    expect(specifiers(`export { y } from "openfeature-kill-switch/dist/src/x.js";`)).toEqual([
      'openfeature-kill-switch/dist/src/x.js',
    ]);
    expect(specifiers(`const m = await import('pg');\nimport './side.js';`)).toEqual([
      './side.js',
      'pg',
    ]);
  });
});
