/**
 * KS-9.2.5 (KS-17.7.9, KS-17.7.10) the drill exercises signatures like a production fleet: its
 * embedded control plane signs with a key made fresh per drill (records, snapshots, acknowledgement
 * answers), and its workers get the public key, so they apply only what it signed and renew their
 * leases only on signed answers. Against a given control plane the drill hands its workers the
 * `publicKeys` it was given: with a key that is not the control plane's they fail closed and the
 * drill says they never became fresh, instead of measuring a fleet that checks nothing.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFlipLogStore } from '../../../providers/file/index.js';
import { TokenAuthenticator } from '../../../src/auth/token-authenticator.js';
import { runDrill } from '../../../src/drill/run/run-drill.js';
import { SigningKey } from '../../../src/integrity/signing-key.js';
import { systemClock } from '../../../src/internal/clock.js';
import { startControlPlane, type ControlPlane } from '../../../src/server/index.js';
import { SCRIPTS, scenarioFrom } from '../../drill/drill-helpers.js';

const dirs: string[] = [];
let cp: ControlPlane | undefined;
let store: FileFlipLogStore | undefined;
afterAll(async () => {
  await cp?.close();
  await store?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const ADMIN = 'drill-sig-admin-0123456789abcdef0123';

/** A control plane on a file log in `dir`, signing with `key`; `ADMIN` may flip. */
async function signingControlPlane(
  dir: string,
  key: SigningKey,
): Promise<{ store: FileFlipLogStore; cp: ControlPlane }> {
  const fileStore = new FileFlipLogStore({ path: join(dir, 'flips.jsonl'), signingKey: key });
  await fileStore.open();
  const controlPlane = await startControlPlane({
    store: fileStore,
    port: 0,
    auth: new TokenAuthenticator({ tokens: [{ name: 'admin', token: ADMIN, role: 'admin' }] }),
    signingKey: key,
    maxFlipsPerSecond: 100_000,
    clock: { ...systemClock, wallNow: systemClock.now },
    logger: { info() {}, warn() {}, error() {} },
  });
  return { store: fileStore, cp: controlPlane };
}

async function twoWorkerScenario(timings?: Record<string, number>) {
  return scenarioFrom('ci.json', (raw) => ({
    ...raw,
    gateway: undefined,
    workers: 2,
    levers: [{ label: 'global', selector: {}, resume: {} }],
    ...(timings === undefined ? {} : { timings: { ...(raw['timings'] as object), ...timings } }),
  }));
}

describe('KS-9.2.5 the drill runs a signing control plane and workers that check it', () => {
  it(
    'embedded: every record the drill appended is signed, and the drill passes with workers that check',
    { timeout: 120_000 },
    async () => {
      const out = await mkdtemp(join(tmpdir(), 'drill-sig-'));
      dirs.push(out);
      const lines: string[] = [];
      const { exitCode, report } = await runDrill({
        scenario: await twoWorkerScenario(),
        ...SCRIPTS,
        outDir: out,
        keepData: true,
        log: (l) => lines.push(l),
      });
      const dataDir = /file log in (\S+)\)/.exec(lines.join('\n'))?.[1];
      expect(dataDir, lines.join('\n')).toBeDefined();
      dirs.push(dataDir!);
      expect(report.violations, lines.join('\n')).toEqual([]);
      expect(exitCode).toBe(0);
      expect(lines.join('\n')).toMatch(/workers check its signatures \(key [0-9a-f]{16}\)/);
      const records = (await readFile(join(dataDir!, 'flips.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { sig?: string });
      expect(records.length).toBeGreaterThanOrEqual(2); // the halt and its resume
      for (const r of records) expect(r.sig).toMatch(/^[0-9a-f]{16}:/);
    },
  );

  it(
    'given a control plane: the workers get the drill’s publicKeys, and with a key that is not its own they fail closed and the drill fails',
    { timeout: 120_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'drill-sig-given-'));
      dirs.push(dir);
      ({ store, cp } = await signingControlPlane(dir, SigningKey.generate()));
      const lines: string[] = [];
      const { exitCode, report } = await runDrill({
        scenario: await twoWorkerScenario({ connectTimeoutMs: 4_000, warmupMs: 300 }),
        ...SCRIPTS,
        url: cp.url,
        token: ADMIN,
        publicKeys: SigningKey.generate().publicKeyPem,
        outDir: dir,
        log: (l) => lines.push(l),
      });
      expect(exitCode, lines.join('\n')).not.toBe(0);
      expect(lines.join('\n')).toMatch(/still not connected and fresh: (w1, w2|w2, w1)/);
      expect(report.violations.map((v) => v.code)).toContain('worker-not-connected');
    },
  );

  it(
    'killswitch drill --url --public-key: the right key lets the drill pass, a key that is not the control plane’s makes it fail',
    { timeout: 180_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'drill-sig-cli-'));
      dirs.push(dir);
      const key = SigningKey.generate();
      const { store: cliStore, cp: cliCp } = await signingControlPlane(dir, key);
      try {
        const raw = JSON.parse(await readFile(resolve('spec/drills/ci.json'), 'utf8')) as Record<
          string,
          unknown
        >;
        // The right key gets time to connect on a loaded host; the wrong one never connects.
        const scenario = async (connectTimeoutMs: number): Promise<string> => {
          const file = join(dir, `two-workers-${connectTimeoutMs}.json`);
          await writeFile(
            file,
            JSON.stringify({
              ...raw,
              gateway: undefined,
              workers: 2,
              levers: [{ label: 'global', selector: {}, resume: {} }],
              timings: { ...(raw['timings'] as object), connectTimeoutMs, warmupMs: 300 },
            }),
          );
          return file;
        };
        const right = join(dir, 'right.pem');
        await writeFile(right, key.publicKeyPem);
        const wrong = join(dir, 'wrong.pem');
        await writeFile(wrong, SigningKey.generate().publicKeyPem);
        const drill = async (pem: string, out: string, connectTimeoutMs: number) =>
          runCli([
            'drill',
            '--url',
            cliCp.url,
            '--token',
            ADMIN,
            '--scenario',
            await scenario(connectTimeoutMs),
            '--public-key',
            pem,
            '--out',
            join(dir, out),
          ]);
        const ok = await drill(right, 'right', 30_000);
        expect(ok.code, ok.output).toBe(0);
        expect(ok.output).toContain('workers check its signatures with the given public key(s)');
        const refused = await drill(wrong, 'wrong', 4_000);
        expect(refused.code, refused.output).toBe(1);
        expect(refused.output).toMatch(/still not connected and fresh: (w1, w2|w2, w1)/);
      } finally {
        await cliCp.close();
        await cliStore.close();
      }
    },
  );
});

/** Runs the built CLI; resolves with its exit code and everything it printed. */
function runCli(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [resolve('dist/src/cli/main.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, output }));
  });
}
