import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/run-cli.js';
import { serveCli, stopCli, type ServedCli } from '../fixtures/serve-cli.js';
import { admin, dropSchemas, PG_UP, PG_URL, RUN_PG, schemaName } from '../postgres/pg-harness.js';

const dirs: string[] = [];
const served: ServedCli[] = [];
const schemas: string[] = [];
afterEach(async () => {
  for (const s of served.splice(0)) await stopCli(s.child);
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  if (PG_UP) await dropSchemas(schemas);
});

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ks-serve-store-'));
  dirs.push(d);
  return d;
}

/** `serve --store <spec>` with its own data directory; a halt through the CLI; its URL. */
async function serveAndHalt(spec: string, dataDir: string): Promise<ServedCli> {
  const s = await serveCli(['--store', spec, '--port', '0', '--data-dir', dataDir]);
  served.push(s);
  const env = { KILLSWITCH_DATA_DIR: dataDir, KILLSWITCH_URL: s.url };
  const r = await runCli(
    ['flip', '--tenant', 'acme', '--reason', 'store test', '--wait', '0'],
    env,
  );
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return s;
}

describe('KS-5.3.2 serve --store chooses the flip log: a file path, postgres://…, or memory', () => {
  it('memory: the banner says it is not durable; nothing is written to the data directory', async () => {
    const d = await tmp();
    const s = await serveAndHalt('memory', d);
    expect(s.out()).toMatch(/flip log: memory \(NOT durable/);
    expect(existsSync(join(d, 'flips.jsonl'))).toBe(false);
  });

  it('a file path: the flips go to that file, not to the data directory', async () => {
    const d = await tmp();
    const other = join(await tmp(), 'custom-flips.jsonl');
    const s = await serveAndHalt(other, d);
    expect(s.out()).toContain(other);
    const lines = (await readFile(other, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ action: 'halt', selector: { tenant: 'acme' } });
    expect(existsSync(join(d, 'flips.jsonl'))).toBe(false);
  });

  it('postgres:// that cannot be reached: serve refuses to start and says why (exit 1)', async () => {
    const d = await tmp();
    const r = await runCli([
      'serve',
      '--store',
      'postgres://127.0.0.1:1/nowhere',
      '--port',
      '0',
      '--data-dir',
      d,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot start: postgres store: could not connect: .*ECONNREFUSED/);
  });
});

if (!PG_UP && RUN_PG) throw new Error('PostgreSQL is not reachable (CI=true): KS-5.3.2 needs it');
describe.runIf(RUN_PG)('KS-5.3.2 serve --store postgres://… uses the PostgreSQL store', () => {
  it('the flip is a row in the schema the URL names', async () => {
    const schema = schemaName('serve_store');
    schemas.push(schema);
    const d = await tmp();
    const s = await serveAndHalt(`${PG_URL}?schema=${schema}`, d);
    expect(s.out()).toMatch(/flip log: postgres /);
    const rows = await admin<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".flips`);
    expect(Number(rows[0]!.n)).toBe(1);
    expect(existsSync(join(d, 'flips.jsonl'))).toBe(false);
  });
});
