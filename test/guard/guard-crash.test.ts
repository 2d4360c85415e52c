import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FileSideEffectLedger } from '../../src/ledger/index.js';

// Runs compiled code: `npm run build` first (the `pretest` script does).
const FIXTURE = resolve('dist/test/fixtures/guard-crash-worker.js');
const ROUNDS = Number(process.env['KS_GUARD_CRASH_ROUNDS'] ?? 6);
const SEED = Number(process.env['KS_GUARD_CRASH_SEED'] ?? Date.now() % 2 ** 31);

const root = await mkdtemp(join(tmpdir(), 'ks-guard-crash-'));
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Starts the worker, SIGKILLs it after `killAfter` dispatches, returns the keys it dispatched. */
function round(
  path: string,
  killAfter: number,
): Promise<{ dispatched: string[]; stderr: string; signal: string | null }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [FIXTURE, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const dispatched: string[] = [];
    let buf = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('dispatched ')) dispatched.push(line.slice('dispatched '.length));
        if (dispatched.length >= killAfter) child.kill('SIGKILL');
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', fail);
    child.on('exit', (_code, signal) => done({ dispatched, stderr, signal }));
  });
}

describe('KS-4.2.2 / KS-4.3.1 / KS-4.3.2 a worker SIGKILLed mid-run and resumed on the same ledger', () => {
  it('has an intent on disk for every dispatched effect and dispatches no key twice', async () => {
    let seed = SEED;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const path = join(root, 'effects.jsonl');
    const seen = new Map<string, number>();
    for (let r = 0; r < ROUNDS; r++) {
      const killAfter = 3 + Math.floor(rand() * 30);
      const res = await round(path, killAfter);
      expect(res.signal, `round ${r}: ${res.stderr}`).toBe('SIGKILL');
      for (const k of res.dispatched) seen.set(k, (seen.get(k) ?? 0) + 1);
      const ledger = new FileSideEffectLedger({ path, logger: { warn: () => undefined } });
      const entries = new Map((await ledger.entries()).map((e) => [e.key, e]));
      await ledger.close();
      for (const k of res.dispatched) {
        expect(
          entries.get(k)?.intent,
          `round ${r} (seed ${SEED}): ${k} dispatched without a durable intent`,
        ).toBeDefined();
      }
    }
    const twice = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
    expect(twice, `seed ${SEED}`).toEqual([]);
    expect(seen.size).toBeGreaterThan(ROUNDS * 3 - 1);
  });
});
