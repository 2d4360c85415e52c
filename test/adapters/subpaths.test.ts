import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/** The frameworks, each the optional peer of one adapter subpath. */
const FRAMEWORKS: Record<string, readonly string[]> = {
  './ai-sdk': ['ai'],
  './openai-agents': ['@openai/agents'],
  './mcp': ['@modelcontextprotocol/sdk'],
  './langgraph': ['langchain', '@langchain/core'],
  './mastra': ['@mastra/core'],
  // The gateway loads the MCP SDK (an optional peer) only when an mcp section is configured.
  './gateway': ['@modelcontextprotocol/sdk'],
};
const ALL = Object.values(FRAMEWORKS).flat();
// Static imports and re-exports only: `import type` is erased at build, and a dynamic `import()`
// loads its module only when called (the gateway loads the MCP SDK only when MCP is configured).
const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\s(?!type\s)[^'"]*?from\s+'([^']+)'|(?:^|\n)\s*import\s+'([^']+)'/g;

/** Package names a source file reaches through its static imports, following relative ones. */
function reachedPackages(entry: string): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (!spec.startsWith('node:')) {
        const parts = spec.split('/');
        packages.add(spec.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!);
      }
    }
  };
  visit(resolve(entry));
  return packages;
}

describe('KS-14.1.8 each adapter is its own subpath export; a worker that uses no framework never loads one', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
    exports: Record<string, { types: string; default: string }>;
    peerDependencies: Record<string, string>;
    peerDependenciesMeta: Record<string, { optional?: boolean }>;
  };

  it('the root entry and every non-adapter subpath reach no framework package', () => {
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target !== 'object' || subpath in FRAMEWORKS) continue;
      const source = target.default.replace(/^\.\/dist\//, './').replace(/\.js$/, '.ts');
      const reached = reachedPackages(source);
      expect(
        [...reached].filter((p) => ALL.includes(p)),
        subpath,
      ).toEqual([]);
    }
  });

  it.each(Object.entries(FRAMEWORKS))(
    '%s reaches only its own framework, an optional peer',
    (subpath, own) => {
      const target = pkg.exports[subpath];
      expect(target, subpath).toBeDefined();
      expect(target!.types).toBe(target!.default.replace(/\.js$/, '.d.ts'));
      const source = target!.default.replace(/^\.\/dist\//, './').replace(/\.js$/, '.ts');
      const reached = [...reachedPackages(source)].filter((p) => ALL.includes(p));
      // Only its own framework (the MCP adapter imports its SDK's types only, so it loads none).
      expect(reached.filter((p) => !own.includes(p))).toEqual([]);
      for (const p of own) {
        expect(pkg.peerDependencies[p], p).toBeDefined();
        expect(pkg.peerDependenciesMeta[p]?.optional, p).toBe(true);
      }
    },
  );
});
