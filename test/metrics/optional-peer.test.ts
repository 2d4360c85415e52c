import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Counter, register as globalRegistry, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { mountMetrics } from '../../src/metrics/index.js';
import { startControlPlane } from '../../src/server/index.js';

const CLI = resolve('dist/src/cli/main.js');
const VIEWER = 'peer-viewer-token-0123456789';
const ADMIN = 'peer-admin-token-0123456789';
let dir: string;
let hook: string;

beforeAll(async () => {
  expect(existsSync(CLI), `${CLI} is missing: run npm run build first`).toBe(true);
  dir = await mkdtemp(join(tmpdir(), 'ks-prom-peer-'));
  // A module hook that makes prom-client missing, as it is for a user who did not install it.
  hook = join(dir, 'no-prom-client.mjs');
  const resolveHook = `export async function resolve(specifier, context, next) {
  if (specifier === 'prom-client' || specifier.startsWith('prom-client/')) {
    const err = new Error("Cannot find package 'prom-client' imported from " + context.parentURL);
    err.code = 'ERR_MODULE_NOT_FOUND';
    throw err;
  }
  return next(specifier, context);
}`;
  await writeFile(
    hook,
    `import { register } from 'node:module';\nregister('data:text/javascript,' + encodeURIComponent(${JSON.stringify(resolveHook)}));\n`,
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs a script in a child Node without prom-client; resolves its exit code and output. */
function withoutPromClient(script: string): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', hook, '--input-type=module', '-e', script],
      { timeout: 60_000 },
      (err, stdout, stderr) =>
        done({ code: err === null ? 0 : Number(err.code ?? -1), out: stdout + stderr }),
    );
  });
}

describe('KS-11.2.5 prom-client is an optional peer', () => {
  it('package.json lists it as an optional peer and a dev dependency, never a dependency', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
    expect(pkg['dependencies']).not.toHaveProperty('prom-client');
    expect(pkg['peerDependencies']).toHaveProperty('prom-client');
    expect(pkg['peerDependenciesMeta']?.['prom-client']).toEqual({ optional: true });
    expect(pkg['devDependencies']).toHaveProperty('prom-client');
  });

  it(
    'a worker and a control plane load without it; only ./metrics needs it',
    { timeout: 90_000 },
    async () => {
      const core = await withoutPromClient(`
      for (const entry of ['openfeature-kill-switch', 'openfeature-kill-switch/providers/remote',
        'openfeature-kill-switch/server', 'openfeature-kill-switch/client',
        'openfeature-kill-switch/ofrep', 'openfeature-kill-switch/providers/file']) await import(entry);
      console.log('loaded');`);
      expect(core.out).toContain('loaded');
      expect(core.code).toBe(0);
      // The hook works: the metrics subpath, which does need it, fails to load.
      const metrics = await withoutPromClient(`await import('openfeature-kill-switch/metrics');`);
      expect(metrics.code).not.toBe(0);
      expect(metrics.out).toMatch(/Cannot find package 'prom-client'/);
    },
  );

  it(
    'killswitch serve without it serves, with /metrics off, and says so',
    { timeout: 60_000 },
    async () => {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env['KILLSWITCH_ADMIN_TOKEN'];
      env['KILLSWITCH_TOKENS'] = JSON.stringify([{ name: 'vera', token: VIEWER, role: 'viewer' }]);
      const child = spawn(
        process.execPath,
        ['--import', hook, CLI, 'serve', '--json', '--data-dir', join(dir, 'serve'), '--port', '0'],
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      try {
        let out = '';
        let err = '';
        child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
        const url = await new Promise<string>((ok, fail) => {
          const timer = setTimeout(() => fail(new Error(`serve did not start: ${err}`)), 50_000);
          child.once('exit', (code) => fail(new Error(`serve exited ${code}: ${err}`)));
          child.stdout.on('data', (c: Buffer) => {
            out += c.toString('utf8');
            const nl = out.indexOf('\n');
            if (nl < 0) return;
            clearTimeout(timer);
            ok((JSON.parse(out.slice(0, nl)) as { url: string }).url);
          });
        });
        expect(err).toMatch(/warning: \/metrics is off \(Cannot find package 'prom-client'/);
        const headers = { authorization: `Bearer ${VIEWER}` };
        expect((await fetch(`${url}/v1/state`, { headers })).status).toBe(200);
        expect((await fetch(`${url}/metrics`, { headers })).status).toBe(404);
      } finally {
        child.kill('SIGKILL');
      }
    },
  );
  it(
    'killswitch gateway without it refuses to start, naming the package and how to install it',
    { timeout: 60_000 },
    async () => {
      const config = join(dir, 'gateway.json');
      await writeFile(config, '{}');
      const run = await new Promise<{ code: number; out: string }>((done) => {
        execFile(
          process.execPath,
          ['--import', hook, CLI, 'gateway', '--config', config],
          { timeout: 50_000 },
          (err, stdout, stderr) =>
            done({ code: err === null ? 0 : Number(err.code ?? -1), out: stdout + stderr }),
        );
      });
      expect(run.code).toBe(2);
      expect(run.out).toContain(
        "killswitch gateway: needs the optional package 'prom-client', which is not installed (npm install prom-client)",
      );
      expect(run.out).not.toMatch(/\n\s+at /);
    },
  );
});

describe("KS-11.2.5 /metrics registers into the user's own prom-client registry", () => {
  it("one scrape of the user's registry carries the control plane's metrics beside the user's; nothing goes global", async () => {
    const registry = new Registry();
    const mine = new Counter({ name: 'app_jobs_total', help: 'mine', registers: [registry] });
    mine.inc(3);
    const store = new MemoryFlipLogStore();
    const cp = await startControlPlane({
      store,
      port: 0,
      auth: new TokenAuthenticator({
        tokens: [
          { name: 'ada', token: ADMIN, role: 'admin' },
          { name: 'vera', token: VIEWER, role: 'viewer' },
        ],
      }),
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    const metrics = await mountMetrics(cp, store, { registry });
    try {
      expect(metrics.registry).toBe(registry);
      const res = await fetch(`${cp.url}/v1/flips`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'halt', selector: { tenant: 'acme' }, reason: 'peer test' }),
      });
      expect(res.status).toBe(201);
      // The user's own exposition (their own /metrics) now has both.
      const text = await registry.metrics();
      expect(text).toContain('app_jobs_total 3');
      expect(text).toMatch(/killswitch_flips_total\{level="tenant",action="halt"\} 1/);
      expect(text).toContain('killswitch_active_halts{level="tenant"} 1');
      // The control plane's /metrics serves the same registry.
      const scraped = await (
        await fetch(`${cp.url}/metrics`, { headers: { authorization: `Bearer ${VIEWER}` } })
      ).text();
      expect(scraped).toContain('app_jobs_total 3');
      expect(await globalRegistry.metrics()).not.toContain('killswitch_');
    } finally {
      metrics.stop();
      await cp.close();
    }
  });
});
