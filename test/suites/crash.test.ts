/**
 * KS-13.1 Crash suite: `killswitch serve` (a child process, file flip log with fsync) is
 * SIGKILLed at seeded random moments during bursts of concurrent flips, `KS_CRASH_SUITE_ROUNDS`
 * times (default 50). After every kill: `killswitch verify` passes on the file as the crash left
 * it, every flip that was answered 2xx is in the log at the seq and with the hash it was answered
 * with, and the server restarts on the same port and data directory. Remote flip sources in this
 * process follow the whole run across the restarts and end having applied every flip of the log
 * exactly once, in order, with one snapshot (the first).
 *
 * Replay a failing schedule with KS_SUITE_SEED=<printed seed>.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readFlipLogFile } from '../../providers/file/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import type { FlipRecord } from '../../src/model/index.js';
import { RecordingListener } from './support/recording-listener.js';
import {
  SUITE_RELEASE,
  SUITE_TOKENS,
  assertBuilt,
  markSuiteReleaseGreen,
  httpJson,
  prng,
  runCli,
  startServe,
  suiteSeed,
  waitFor,
  type ServeProcess,
} from './support/serve-process.js';

const ROUNDS = Number(process.env['KS_CRASH_SUITE_ROUNDS'] ?? 50);
const CLIENTS = 3;

let dir: string | undefined;
let server: ServeProcess | undefined;
const sources: RemoteFlipSource[] = [];

afterAll(async () => {
  for (const s of sources) await s.stop();
  await server?.stop('SIGKILL');
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

interface RoundPlan {
  readonly writers: number;
  /** Kill once this many flips were answered in the round... */
  readonly killAfterAcks: number;
  /** ...plus this many ms. */
  readonly killDelayMs: number;
}

/**
 * Writers POST flips in a loop (each halts then resumes its own tenant, so resumes are valid and
 * the state stays small) until the server dies under them. Every 2xx answer is recorded as
 * acknowledged; a request that got no answer may or may not be in the log, and both are fine.
 */
async function burst(
  url: string,
  round: number,
  plan: RoundPlan,
  kill: () => void,
): Promise<{ acked: FlipRecord[]; answers: Map<number, number> }> {
  const acked: FlipRecord[] = [];
  const answers = new Map<number, number>();
  let killArmed = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; ; i++) {
      let status: number;
      let flip: FlipRecord | undefined;
      try {
        const a = await httpJson(`${url}/v1/flips`, 'POST', {
          token: SUITE_TOKENS.admin,
          body: {
            id: `crash-${round}-${w}-${i}`,
            action: i % 2 === 0 ? 'halt' : 'resume',
            // serve gates resumes on a green release (KS-10.5.3); halts may name it too.
            release: SUITE_RELEASE,
            selector: { tenant: `w${w}` },
            reason: `crash suite round ${round} writer ${w} step ${i}`,
          },
          timeoutMs: 10_000,
        });
        status = a.status;
        flip = (a.json as { flip?: FlipRecord } | undefined)?.flip;
      } catch {
        return; // the server is gone: this writer's last flip is unanswered
      }
      answers.set(status, (answers.get(status) ?? 0) + 1);
      if ((status === 200 || status === 201) && flip !== undefined) {
        acked.push(flip);
        if (!killArmed && acked.length >= plan.killAfterAcks) {
          killArmed = true;
          setTimeout(kill, plan.killDelayMs);
        }
      } else {
        throw new Error(`round ${round}: POST /v1/flips answered ${status}`);
      }
    }
  };
  await Promise.all(Array.from({ length: plan.writers }, (_, w) => writer(w)));
  return { acked, answers };
}

describe('KS-13.1.1 a control plane SIGKILLed during bursts of flips loses no acknowledged flip, its log verifies and clients resume', () => {
  it(`${ROUNDS} seeded kills: every 2xx flip is durable at its seq, verify passes, clients apply each flip once in order`, async () => {
    assertBuilt();
    const seed = suiteSeed('crash');
    const rand = prng(seed);
    dir = await mkdtemp(join(tmpdir(), 'ks-suite-crash-'));
    const logPath = join(dir, 'flips.jsonl');
    server = await startServe({ dataDir: dir, port: 0, heartbeatMs: 200, staleAfterMs: 2000 });
    const port = server.port;
    const url = server.url;
    await markSuiteReleaseGreen(url);

    const listeners: RecordingListener[] = [];
    for (let c = 0; c < CLIENTS; c++) {
      const source = new RemoteFlipSource({
        urls: [url],
        token: SUITE_TOKENS.worker,
        workerId: `crash-client-${c}`,
        release: SUITE_RELEASE,
        staleAfterMs: 2000,
        heartbeatMs: 200,
        backoff: { initialMs: 10, maxMs: 50 },
      });
      const l = new RecordingListener();
      await source.start(l);
      sources.push(source);
      listeners.push(l);
    }
    await waitFor(() => sources.every((s) => s.status === 'open'), 15_000, 'clients open');

    const allAcked = new Map<string, FlipRecord>();
    let tornRounds = 0;
    let cliVerified = 0;
    const started = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      const plan: RoundPlan = {
        writers: 2 + Math.floor(rand() * 7),
        killAfterAcks: 1 + Math.floor(rand() * 15),
        killDelayMs: Math.floor(rand() * 30),
      };
      const victim = server;
      const { acked } = await burst(url, round, plan, () => victim.child.kill('SIGKILL'));
      const exit = await victim.exited;
      expect(exit.signal, `round ${round}: the server was killed, not stopped`).toBe('SIGKILL');
      for (const f of acked) allAcked.set(f.id, f);

      // The file exactly as the crash left it (a copy, so the check runs while the server
      // restarts and cuts any torn tail): the chain verifies; a torn last line is allowed, that
      // append was never answered.
      const copy = join(dir, `after-kill-${round}.jsonl`);
      await copyFile(logPath, copy);
      const { records, tornBytes } = await readFlipLogFile(copy);
      if (tornBytes > 0) tornRounds++;
      for (const f of allAcked.values()) {
        const r = records[f.seq - 1];
        expect(r?.id, `round ${round} (seed ${seed}): acknowledged flip ${f.id} lost`).toBe(f.id);
        expect(r?.hash).toBe(f.hash);
      }
      // `killswitch verify` itself on every fifth kill and at the end (a process start costs as
      // much as the server's own restart on these machines); the same verifier in-process above
      // (readFlipLogFile throws on a broken chain) on every kill.
      const [v, next] = await Promise.all([
        round % 5 === 4 ? runCli(['verify', '--json', copy]) : undefined,
        startServe({ dataDir: dir, port, heartbeatMs: 200, staleAfterMs: 2000 }),
      ]);
      server = next;
      if (v !== undefined) {
        expect(v.code, `round ${round} (seed ${seed}): verify failed: ${v.stdout}${v.stderr}`).toBe(
          0,
        );
        expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, records: records.length });
        cliVerified++;
      }
      await rm(copy);
      const head = records.length;
      await waitFor(
        () => sources.every((s) => s.appliedSeq >= head),
        20_000,
        `round ${round}: clients at seq ${head}`,
      );
    }

    const { records } = await readFlipLogFile(logPath);
    const v = await runCli(['verify', logPath]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const expected = ['s0', ...records.map((r) => r.seq)];
    for (const l of listeners) {
      expect(l.judge(records)).toBeUndefined();
      // One snapshot (the first): every restart was resumed by Last-Event-ID, every flip applied.
      expect(l.applied).toEqual(expected);
    }
    console.log(
      `[crash] ${ROUNDS} kills in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
        `${records.length} records, ${allAcked.size} acknowledged, ` +
        `${records.length - allAcked.size} appended but unanswered; killswitch verify passed on ${cliVerified} ` +
        `post-crash files and the in-process verifier on all ${ROUNDS} (${tornRounds} with a torn tail); ` +
        `${CLIENTS} clients each applied ${records.length} flips once, in order`,
    );
  }, 240_000);
});
