import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenFeature } from '@openfeature/server-sdk';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { mountConsole } from '../../src/console/index.js';
import { EffectGuard } from '../../src/guard/index.js';
import { resetActivity } from '../../src/guard/worker-activity.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import { ReleaseGate } from '../../src/server/release-gate.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'console-fh-admin-token-0123456789';
const WORKER = 'console-fh-worker-token-0123456789';

// Browser tests need Debian's chromium: they fail under CI=true without it and skip elsewhere.
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env['CI'] === 'true') {
  throw new Error(`${CHROMIUM} is missing (apt-get install chromium)`);
}

let cp: ControlPlane;
let store: MemoryFlipLogStore;
let dir = '';
let browser: BrowserContext | undefined;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  if (!haveChromium) return;
  resetActivity();
  dir = await mkdtemp(join(tmpdir(), 'ks-console-fh-'));
  store = new MemoryFlipLogStore();
  const releaseGate = new ReleaseGate({ path: join(dir, 'releases.jsonl'), logger: { warn() {} } });
  cp = await startControlPlane({
    store,
    port: 0,
    heartbeatMs: 300,
    staleAfterMs: 1500,
    releaseGate,
    auth: new TokenAuthenticator({
      tokens: [
        { name: 'ada', token: ADMIN, role: 'admin' },
        { name: 'worker', token: WORKER, role: 'worker', workers: ['*'] },
      ],
    }),
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  mountConsole(cp);
  // One worker with a guard that has done work for tenant acme (a recent context).
  const provider = new KillSwitchProvider({
    source: new RemoteFlipSource({
      urls: [cp.url],
      token: WORKER,
      workerId: 'fh-worker',
      release: 'v1',
      staleAfterMs: 1500,
      heartbeatMs: 300,
      logger: { warn: () => {} },
    }),
    logger: { warn: () => {} },
  });
  await OpenFeature.setProviderAndWait('console-fh', provider);
  cleanups.push(() => provider.onClose());
  await provider.waitUntilFresh({ timeoutMs: 10_000 });
  const guard = new EffectGuard({
    client: OpenFeature.getClient('console-fh'),
    ledger: new MemorySideEffectLedger(),
  });
  cleanups.push(() => guard.close());
  await guard.run(
    { context: { tenant: 'acme' }, runId: 'r1', step: 's', capability: 'email.send' },
    async () => 'sent',
  );
  const profile = await mkdtemp(join(tmpdir(), 'ks-console-fh-chromium-'));
  cleanups.push(() => rm(profile, { recursive: true, force: true }));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
}, 60_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  for (const c of cleanups.splice(0).reverse()) await c();
  await cp?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  resetActivity();
});

async function signIn(page: Page): Promise<void> {
  await page.goto(cp.url + '/');
  await page.fill('#token', ADMIN);
  await page.click('#login-form button[type=submit]');
  await expect.poll(() => page.textContent('#stream-status'), { timeout: 10_000 }).toBe('live');
}

async function flip(action: 'halt' | 'resume', selector: object, extra: object = {}) {
  const res = await fetch(cp.url + '/v1/flips', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ action, selector, reason: `${action} by test`, ...extra }),
  });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
}

describe.skipIf(!haveChromium)('KS-16.5 the console at 3am, on a phone in real Chromium', () => {
  it('KS-16.5.1 KS-16.5.2 KS-16.5.3 banner, order, paged log, a matched-nothing warning, and marking a release green', async () => {
    const page = browser!.pages()[0] ?? (await browser!.newPage());
    await signIn(page);
    expect(await page.isVisible('#halt-banner')).toBe(false);

    // A halt from the console on a tenant no worker has seen: the result says so.
    await page.fill('#target', 'ACME');
    await page.fill('#reason', 'typo at 3am');
    await page.click('#btn-tenant');
    await expect
      .poll(() => page.textContent('#flip-result'), { timeout: 15_000 })
      .toContain(
        'WARNING: no worker has seen tenant ACME: the halt matched no call in flight, no queued task and no context evaluated in the last 10 minutes on 1 worker(s); did you mean acme?',
      );
    await expect.poll(() => page.textContent('#halt-banner')).toBe('1 halt active: {tenant=ACME}');

    // A global halt: the banner cannot be mistaken, and stays in view when the page scrolls.
    await flip('halt', {});
    await expect
      .poll(() => page.textContent('#halt-banner'))
      .toMatch(/^EVERYTHING IS HALTED \(flip #2 by ada: halt by test\) and 1 more halt\(s\)$/);
    expect(await page.getAttribute('#halt-banner', 'class')).toBe('banner global');

    // Many flips: the log shows 20, then more on request; halts and fleet come first.
    for (let i = 0; i < 19; i++) await flip('halt', { capability: `cap.${i}` });
    await expect.poll(() => page.textContent('#head'), { timeout: 15_000 }).toBe('head #21');
    await expect.poll(() => page.locator('#flips li').count(), { timeout: 15_000 }).toBe(20);
    expect(await page.isVisible('#flips-more')).toBe(true);
    expect(await page.textContent('#flips-more')).toBe('Show older flips (1 more)');
    const order = await page.evaluate<number[]>(
      "['halts', 'fleet', 'flips'].map((id) => document.getElementById(id).getBoundingClientRect().top)",
    );
    expect(order[0]!).toBeLessThan(order[1]!);
    expect(order[1]!).toBeLessThan(order[2]!);
    // 21 active halts: paged too (the fleet was 7,900 px down a phone's page under 43 halts),
    // the global one first, then the newest.
    await expect.poll(() => page.locator('#halts li').count()).toBe(10);
    const seqs = await page
      .locator('#halts li')
      .evaluateAll((lis) => lis.map((li) => Number(li.getAttribute('data-seq'))));
    expect(seqs).toEqual([2, 21, 20, 19, 18, 17, 16, 15, 14, 13]);
    expect(await page.textContent('#halts-more')).toBe('Show 11 more halt(s)');
    const fleetTop = await page.evaluate<number>(
      "document.getElementById('fleet').getBoundingClientRect().top + window.scrollY",
    );
    expect(fleetTop).toBeLessThan(3000);
    await page.click('#halts-more');
    await expect.poll(() => page.locator('#halts li').count()).toBe(20);
    await page.click('#halts-more');
    await expect.poll(() => page.locator('#halts li').count()).toBe(21);
    expect(await page.isVisible('#halts-more')).toBe(false);
    await page.click('#flips-more');
    await expect.poll(() => page.locator('#flips li').count()).toBe(21);
    await page.evaluate('window.scrollTo(0, document.body.scrollHeight)');
    const banner = await page.locator('#halt-banner').boundingBox();
    expect(banner).not.toBeNull();
    expect(banner!.y).toBeGreaterThanOrEqual(0);
    expect(banner!.y).toBeLessThan(200);

    // Mark a release green from the console; a resume on it then passes the gate.
    await page.fill('#release-name', 'v2');
    await page.click('#release-green');
    expect(await page.textContent('#release-result')).toBe('A release and a reason are required.');
    await page.fill('#release-reason', 'fix deployed');
    await page.click('#release-green');
    await expect
      .poll(() => page.textContent('#release-result'))
      .toMatch(/^Release v2 marked green \(#\d+ by ada\)\. A resume on it may pass now\.$/);
    const releases = (await (
      await fetch(cp.url + '/v1/releases', { headers: { authorization: `Bearer ${ADMIN}` } })
    ).json()) as { releases: { release: string; status: string }[] };
    expect(releases.releases.find((r) => r.release === 'v2')?.status).toBe('green');
    await flip('resume', {}, { release: 'v2' });
    await expect.poll(() => page.textContent('#halt-banner')).not.toMatch(/EVERYTHING/);
  }, 120_000);

  it('KS-11.1.5 an active halt shows level, selector, who, when, why, mode and source; a gate refusal of its resume is shown with the message', async () => {
    // A new tab: its sessionStorage holds no token yet.
    const page = await browser!.newPage();
    await signIn(page);
    const res = await fetch(cp.url + '/v1/flips', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        action: 'halt',
        selector: { tenant: 'globex' },
        reason: 'globex invoices loop',
        mode: 'hold',
        source: 'pager',
      }),
    });
    expect(res.status).toBeLessThan(300);
    const { flip: rec } = (await res.json()) as { flip: { seq: number; at: string } };
    const halt = page.locator(`#halts li[data-seq="${rec.seq}"]`);
    await expect.poll(() => halt.count(), { timeout: 10_000 }).toBe(1);
    const top = (await halt.locator('.top').textContent()) ?? '';
    expect(top).toContain('tenant');
    expect(top).toContain('{tenant=globex}');
    expect(top).toContain(`#${rec.seq} by ada at `);
    expect(top).toContain(new Date(rec.at).toISOString().slice(11, 19));
    expect(top).toContain('hold');
    expect(top).toContain('via pager');
    expect(await halt.locator('.why').textContent()).toBe('globex invoices loop');

    // Both release and reason are checked in the page; nothing is sent without them.
    await halt.locator('.resume-open').click();
    await halt.locator('.resume-release').fill('v9');
    await halt.locator('.resume-go').click();
    expect(await halt.locator('.result').textContent()).toBe(
      'A release and a reason are required to resume.',
    );
    const before = (await store.read()).length;
    // v9 was never marked green: the server's release gate refuses, and the page says why.
    await halt.locator('.resume-reason').fill('try it');
    await halt.locator('.resume-go').click();
    await expect
      .poll(() => halt.locator('.result').textContent(), { timeout: 10_000 })
      .toMatch(/^Not resumed: .*v9/);
    expect((await store.read()).length).toBe(before);
    expect(await halt.count()).toBe(1);
  }, 60_000);

  it('KS-11.1.7 the fleet table shows each worker with release, connection, acked seq, lag, lease and stale state, polled every 2 s', async () => {
    const page = await browser!.newPage();
    const polls: number[] = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/v1/workers')) polls.push(Date.now());
    });
    await signIn(page);
    const row = page.locator('#fleet tbody tr[data-worker="fh-worker"]');
    const cell = (label: string) => row.locator(`td[data-label="${label}"]`).textContent();
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    expect(await cell('release')).toBe('v1');
    expect(await cell('connected')).toMatch(/^yes \(\d+\)$/);
    expect(await cell('lease')).toMatch(/\d\d:\d\d:\d\d/);
    expect(await cell('state')).toBe('fresh');
    // A new flip: the table follows without a reload, once the worker acknowledged it.
    await flip('halt', { capability: 'fleet.table' });
    const head = (await store.read()).at(-1)!.seq;
    await expect.poll(() => cell('acked seq'), { timeout: 10_000 }).toBe(String(head));
    await expect.poll(() => cell('lag'), { timeout: 10_000 }).toBe('0');
    // Refreshed on a timer: at least two polls of GET /v1/workers about 2 s apart.
    await expect.poll(() => polls.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    const gaps = polls.slice(1).map((t, i) => t - polls[i]!);
    expect(gaps.some((g) => g >= 1500 && g <= 4000)).toBe(true);
  }, 60_000);
});
