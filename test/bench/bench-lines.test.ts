/**
 * The benchmarks a requirement names, run in a tiny bounded mode: each must finish and end with
 * one JSON line carrying the figures the requirement names. No figure is judged here (a timed
 * assertion in a test is a flaky test); `npm run bench:*` on a quiet machine gives the figures.
 * Runs compiled code: `npm run build` first (the `pretest` script does).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PG_UP, RUN_PG } from '../postgres/pg-harness.js';

/** Runs a compiled bench; returns its exit code, its output and its last line parsed. */
async function bench(
  script: string,
  args: string[],
): Promise<{ code: number | null; out: string; last: Record<string, unknown> }> {
  const path = resolve('dist/bench', script);
  expect(existsSync(path), `${path} is missing: run npm run build first`).toBe(true);
  const child = spawn(process.execPath, [path, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  const lines = out.trim().split('\n');
  let last: Record<string, unknown> = {};
  try {
    last = JSON.parse(lines.at(-1) ?? '') as Record<string, unknown>;
  } catch {
    // left empty: the expectations below say what is missing, with the output
  }
  return { code, out, last };
}

const finite = expect.any(Number) as unknown as number;
const percentiles = { p50Ms: finite, p99Ms: finite };

describe('KS-14.6.2 npm run bench:adapters prints, per framework, the added time of a guarded no-op call and the flip-to-abort latency', () => {
  it('ends with one JSON line: bare and guarded p50/p99, the added p50 and p99 and CPU time per call per framework, the abort p50/p99', async () => {
    const r = await bench('adapters/adapters.js', [
      '--rounds',
      '1',
      '--calls',
      '30',
      '--aborts',
      '3',
    ]);
    expect(r.code, r.out).toBe(0);
    const row = {
      bareP50Us: finite,
      bareP99Us: finite,
      guardedP50Us: finite,
      guardedP99Us: finite,
      addedP50Us: finite,
      addedP99Us: finite,
      bareCpuUsPerCall: finite,
      guardedCpuUsPerCall: finite,
      addedCpuUsPerCall: finite,
    };
    expect(r.last, r.out).toMatchObject({
      bench: 'adapters',
      targetAddedP50Us: 50,
      'ai-sdk': row,
      'openai-agents': row,
      mcp: row,
      langgraph: row,
      'langgraph-toolnode': row,
      mastra: row,
      abortLatencyMs: { n: 3, p50: finite, p99: finite },
    });
    // Figures for people too, with the targets named.
    expect(r.out).toMatch(
      /added p50 .* µs {2}p99 .* µs {2}cpu .* µs\/call \((<= 50 µs target|OVER the 50 µs target)\)/,
    );
    expect(r.out).toMatch(/tool signal aborted .*p50 .* ms, p99 .* ms.*\(target < 5 ms\)/);
  }, 120_000);
});

describe('KS-4.7.1 bench/guard/guard.ts measures guard.run around a no-op, memory and fsynced file ledgers against the bare call', () => {
  it('ends with one JSON line: p50/p99 of the direct call and of both ledgers', async () => {
    const r = await bench('guard/guard.js', [
      '--rounds',
      '1',
      '--calls',
      '30',
      '--fsync-calls',
      '5',
    ]);
    expect(r.code, r.out).toBe(0);
    const p = { p50Us: finite, p99Us: finite };
    expect(r.last, r.out).toMatchObject({
      bench: 'guard',
      direct: p,
      memory: p,
      fileFsync: p,
      overheadP50Us: { memory: finite, fileFsync: finite },
    });
  }, 120_000);
});

describe('KS-12.6.1 bench/backends measures flip-to-visible for SSE, OFREP and LaunchDarkly, and what each answers while down', () => {
  it('ends with one JSON line carrying each backend, its push/poll figures and its answer while down', async () => {
    const r = await bench('backends/backends.js', ['--rounds', '2', '--poll-rounds', '2']);
    expect(r.code, r.out).toBe(0);
    expect(r.last, r.out).toMatchObject({
      bench: 'backends',
      killswitchSse: {
        push: true,
        flipToVisible: percentiles,
        down: { answerToDefaultFalseCaller: { value: true, variant: 'fail-closed' } },
      },
      ofrep: {
        perEvaluation: { evaluationRoundTrip: percentiles, flipToNextEvaluation: percentiles },
        poll1s: { flipToAbortInFlight: percentiles },
        bulkPoll1s: { flipToVisible: percentiles, notModified: finite },
        down: { guardDefaultTrue: expect.anything() },
      },
      launchDarklyLocalStream: {
        flipToVisible: percentiles,
        down: { failsClosed: expect.any(Boolean), haltMadeWhileDown: expect.anything() },
      },
    });
  }, 180_000);

  it('docs/backends.md carries the figures with the date and the machine', async () => {
    const doc = await readFile('docs/backends.md', 'utf8');
    expect(doc).toContain('node dist/bench/backends/backends.js');
    expect(doc).toMatch(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
    expect(doc).toMatch(/\d vCPU/);
    expect(doc).toMatch(/load average/);
    expect(doc).toMatch(/LaunchDarkly.*\| [\d.]+ ms \/ [\d.]+ ms/);
  });
});

if (!PG_UP && RUN_PG) throw new Error('PostgreSQL is not reachable (CI=true): KS-12.6.2 needs it');
describe.runIf(RUN_PG)(
  'KS-12.6.2 bench/propagation measures a flip on replica A applied by subscribers of replica B on one PostgreSQL log',
  () => {
    it('ends with one JSON line carrying p50 and p99 of the replicated case', async () => {
      const r = await bench('propagation/propagation.js', [
        '--cases',
        'replicated',
        '--rounds',
        '2',
        '--replicated-sizes',
        '1',
      ]);
      expect(r.code, r.out).toBe(0);
      expect(r.last, r.out).toMatchObject({
        bench: 'propagation',
        replicated: {
          store: 'postgresql',
          rows: [
            {
              subscribersOnB: 1,
              fromPostSentP50Ms: finite,
              fromPostSentP99Ms: finite,
              missing: 0,
            },
          ],
        },
      });
    }, 180_000);
  },
);
