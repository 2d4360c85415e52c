import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';

/** The CLI's commands, read from the one table src/cli/main.ts dispatches on. */
async function cliCommands(): Promise<string[]> {
  const main = await readFile('src/cli/main.ts', 'utf8');
  const names = [
    ...main.matchAll(/^\s+([a-z]+): \(\) => import\('\.\/commands\/\1\.js'\),$/gm),
  ].map((m) => m[1]!);
  return names;
}

/** The package names of the README's "Runtime dependencies, and why" table, one entry per mention. */
function dependencyTableNames(readme: string): string[] {
  const start = readme.indexOf('## Runtime dependencies, and why');
  expect(start, 'the README has its runtime dependency section').toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return rows.flatMap((row) => [...row.split(' | ')[0]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
}

describe('KS-16.1.4 the README names every command and says why each package is there', () => {
  it('every CLI command appears as `killswitch <command>`', async () => {
    const readme = await readFile('README.md', 'utf8');
    const commands = await cliCommands();
    // The dispatch table has one line per command; a parse that found few would prove nothing.
    expect(commands.length).toBeGreaterThanOrEqual(14);
    const missing = commands.filter((c) => !readme.includes(`killswitch ${c}`));
    expect(missing, 'commands the README never names').toEqual([]);
  });

  it('the dependency table names each dependency and peer dependency exactly once', async () => {
    const readme = await readFile('README.md', 'utf8');
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as {
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
    };
    const named = dependencyTableNames(readme);
    const twice = named.filter((n, i) => named.indexOf(n) !== i);
    expect(twice, 'packages the table names twice').toEqual([]);
    const expected = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.peerDependencies)];
    expect(
      expected.filter((p) => !named.includes(p)),
      'packages the table leaves out',
    ).toEqual([]);
    expect(
      named.filter((n) => !expected.includes(n)),
      'names that are not dependencies',
    ).toEqual([]);
  });
});
