import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/run-cli.js';
import { serveCli, stopCli, type ServedCli } from '../fixtures/serve-cli.js';

/** The documents whose TypeScript snippets must be files CI compiles and runs. */
async function documents(): Promise<string[]> {
  const docs = (await readdir('docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

/** Every ```ts block of a markdown file, with the `<!-- example: path -->` line above it (if any). */
function tsBlocks(md: string): { line: number; marker: string | undefined; code: string }[] {
  const lines = md.split('\n');
  const out: { line: number; marker: string | undefined; code: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript|js|javascript)\s*$/.test(lines[i]!)) continue;
    const end = lines.indexOf('```', i + 1);
    const marker = /^<!-- example: (\S+) -->$/.exec(lines[i - 1] ?? '')?.[1];
    out.push({ line: i + 1, marker, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return out;
}

describe('KS-16.1.1 every README and docs snippet is a file that CI type-checks and runs', () => {
  it('each ```ts block is marked with its file and is that file byte for byte', async () => {
    let checked = 0;
    for (const doc of await documents()) {
      for (const b of tsBlocks(await readFile(doc, 'utf8'))) {
        expect(b.marker, `${doc}:${b.line} has no <!-- example: path --> line`).toBeDefined();
        expect(b.marker!, `${doc}:${b.line}`).toMatch(/^examples\/.+\.ts$/);
        const file = await readFile(b.marker!, 'utf8');
        expect(`${b.code}\n`, `${doc}:${b.line} differs from ${b.marker}`).toBe(file);
        checked++;
      }
    }
    // README: the AI SDK agent, guarding a tool call; docs: four adapters, the OFREP worker.
    expect(checked).toBeGreaterThanOrEqual(7);
  });
});

/** Runs a built example to its end (it must exit by itself: shutdown is part of the snippet). */
function runExample(
  name: string,
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [resolve(`dist/examples/readme/${name}.js`)], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`examples/readme/${name} did not exit within 20 s:\n${out}\n${err}`));
    }, 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, out, err });
    });
  });
}

describe('KS-16.1.1 KS-16.3.1 the README snippets run against killswitch serve', () => {
  let dir = '';
  let serve: ServedCli | undefined;
  let token = '';
  let runs = 0;
  let refunds: { close(): Promise<void>; url: string; seen: IncomingHttpHeaders[] };
  const env = () => ({
    KILLSWITCH_URL: serve!.url,
    KILLSWITCH_TOKEN: token,
    KILLSWITCH_DATA_DIR: dir,
    REFUNDS_URL: refunds.url,
    // each run a fresh worker with a ledger of its own (one ledger would refuse the repeat)
    LEDGER_PATH: join(dir, `ledger-${++runs}.jsonl`),
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-readme-'));
    serve = await serveCli(['--data-dir', dir, '--port', '0']);
    token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    refunds = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/refunds`,
      seen,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }, 30_000);
  afterAll(async () => {
    if (serve) await stopCli(serve.child);
    await refunds?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('"Guarding a tool call": sends the refund once fresh, exits by itself, then is refused by a tenant halt naming the flip', async () => {
    const first = await runExample('guard-tool-call', env());
    expect(first.code, first.err).toBe(0);
    expect(first.out).toBe('refund sent: HTTP 201\n');
    expect(first.err).toBe(''); // no warning (a file handle closed on garbage collection, say)
    expect(refunds.seen).toHaveLength(1);
    expect(refunds.seen[0]!['idempotency-key']).toMatch(/ticket-4711/);

    const flip = await runCli(
      [
        'flip',
        '--tenant',
        'acme',
        '--reason',
        'refunds looping',
        '--wait',
        '0',
        '--url',
        serve!.url,
      ],
      { KILLSWITCH_TOKEN: token },
    );
    expect(flip.code, flip.stderr).toBe(0);
    const second = await runExample('guard-tool-call', env());
    expect(second.code, second.err).toBe(0);
    expect(second.out).toMatch(
      /^effect ticket-4711\/1%3Arefund refused: halted by flip #1 \{tenant=acme\} \(id .*, by admin: refunds looping\)\n$/,
    );
    expect(refunds.seen).toHaveLength(1);
    // Run again on the first run's ledger: the step landed, so nothing is sent twice.
    const again = await runExample('guard-tool-call', {
      ...env(),
      LEDGER_PATH: join(dir, 'ledger-1.jsonl'),
    });
    expect(again.code, again.err).toBe(0);
    expect(again.out).toBe('effect ticket-4711/1%3Arefund not dispatched: already landed\n');
    expect(refunds.seen).toHaveLength(1);

    // The README's walk-through, on its one ledger: another ticket (RUN_ID) is refused by the
    // halt (the same ticket would only say it already landed), and the report over that ledger
    // shows the landed refund and the refused one. The README gives exactly these commands.
    const readme = await readFile('README.md', 'utf8');
    expect(readme).toContain(
      'KILLSWITCH_TOKEN=$(cat .killswitch/admin.token) RUN_ID=ticket-4712 node dist/examples/readme/guard-tool-call.js',
    );
    const other = await runExample('guard-tool-call', {
      ...env(),
      LEDGER_PATH: join(dir, 'ledger-1.jsonl'),
      RUN_ID: 'ticket-4712',
    });
    expect(other.code, other.err).toBe(0);
    expect(other.out).toMatch(
      /^effect ticket-4712\/1%3Arefund refused: halted by flip #1 \{tenant=acme\} \(id .*, by admin: refunds looping\)\n$/,
    );
    expect(refunds.seen).toHaveLength(1);
    const report = await runCli(
      ['report', '--tenant', 'acme', '--ledger', join(dir, 'ledger-1.jsonl'), '--json'],
      {},
    );
    expect(report.code, report.stderr).toBe(0);
    const totals = (JSON.parse(report.stdout) as { totals: Record<string, number> }).totals;
    expect({ landed: totals['landed'], refused: totals['refused'] }).toEqual({
      landed: 1,
      refused: 1,
    });

    const lift = await runCli(
      ['resume', '--tenant', 'acme', '--reason', 'fixed', '--release', 'v42', '--mark-green'],
      { KILLSWITCH_TOKEN: token, KILLSWITCH_URL: serve!.url },
    );
    expect(lift.code, lift.stdout + lift.stderr).toBe(0);
  }, 60_000);

  it('"Guarding a tool call" with a refused token: waitUntilFresh fails with KS_STALE saying why, nothing is sent', async () => {
    const run = await runExample('guard-tool-call', {
      ...env(),
      KILLSWITCH_TOKEN: 'not-the-token-0123456789',
    });
    expect(run.code).not.toBe(0);
    expect(run.err).toContain("refused this worker's token (401 KS_UNAUTHORIZED: unknown token)");
    expect(run.err).toMatch(/KS_STALE|kill switch not fresh within 5000 ms/);
    expect(refunds.seen).toHaveLength(1);
  }, 30_000);

  it('"Run trees" (KS-4.9): two child runs send their lineage to the tool; halting the root run refuses both spawns', async () => {
    const env2 = () => ({ ...env(), TOOL_URL: refunds.url });
    const before = refunds.seen.length;
    const ok = await runExample('run-tree', env2());
    expect(ok.code, ok.err).toBe(0);
    const lines = ok.out.trim().split('\n');
    expect(lines.slice(0, 2).sort()).toEqual([
      expect.stringMatching(/^report-7 > research-pricing\.[0-9a-f]{24}: HTTP 201$/),
      expect.stringMatching(/^report-7 > research-reviews\.[0-9a-f]{24}: HTTP 201$/),
    ]);
    expect(lines[2]).toBe('a tool service would run under report-7 > research-pricing.1a2b');
    const sent = refunds.seen.slice(before).map((h) => h['x-killswitch-run-path']);
    expect(sent).toHaveLength(2);
    for (const p of sent) expect(String(p)).toMatch(/^report-7,research-(pricing|reviews)\./);
    expect(refunds.seen[before]!['x-killswitch-tenant']).toBe('acme');

    const flip = await runCli(
      ['flip', '--run', 'report-7', '--reason', 'tree stop', '--wait', '0', '--url', serve!.url],
      { KILLSWITCH_TOKEN: token },
    );
    expect(flip.code, flip.stderr).toBe(0);
    const refused = await runExample('run-tree', env2());
    expect(refused.code, refused.err).toBe(0);
    const out = refused.out.trim().split('\n');
    expect(
      out
        .slice(0, 2)
        .every((l) =>
          /^spawn of child run research-\w+\.[0-9a-f]{24}.*halted by flip #\d+ \{runId=report-7\}/.test(
            l,
          ),
        ),
      refused.out,
    ).toBe(true);
    expect(refunds.seen).toHaveLength(before + 2);
  }, 60_000);

  it('docs/backends.md OFREP worker: runs the effect, then is refused by a halt, and exits', async () => {
    const ok = await runExample('ofrep-worker', env());
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toBe('sending (aborted: false)\n');
    const flip = await runCli(
      ['flip', '--tenant', 'acme', '--reason', 'ofrep stop', '--wait', '0', '--url', serve!.url],
      { KILLSWITCH_TOKEN: token },
    );
    expect(flip.code, flip.stderr).toBe(0);
    const refused = await runExample('ofrep-worker', env());
    expect(refused.code, refused.err).toBe(0);
    expect(refused.out).toMatch(/^effect ticket-7\/notify refused: halted/);
  }, 60_000);
});
