/**
 * KS-17.4.1, KS-17.4.2 over the wire, in the auth-matrix style: every reader (admin, worker,
 * viewer, a viewer scoped to acme, an operator of acme, of globex, of a capability) reads the
 * state, the log (paged by the cursor) and the stream, and sees exactly what its scopes let it:
 * another tenant's flips, reasons and halts never; the global halt and what can stop its tenant,
 * always; a flip it may not read moves its stream on as a `skip` (seq and hash only).
 * Issue 15: "every role reads every tenant's flips and reasons".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../../providers/memory/index.js';
import { TokenAuthenticator, type TokenSpec } from '../../../src/auth/index.js';
import type { FlipRecord } from '../../../src/model/flip-record.js';
import { mountConsole } from '../../../src/console/index.js';
import { startControlPlane, type ControlPlane } from '../../../src/server/index.js';
import { runCli } from '../../fixtures/run-cli.js';

const T = {
  admin: 'rs-admin-0123456789abcdef',
  worker: 'rs-worker-0123456789abcdef',
  viewer: 'rs-viewer-0123456789abcdef',
  acmeViewer: 'rs-viewer-acme-0123456789',
  acme: 'rs-operator-acme-0123456789',
  globex: 'rs-operator-globex-01234567',
  refund: 'rs-operator-refund-01234567',
} as const;
type Who = keyof typeof T;

const SPECS: TokenSpec[] = [
  { name: 'admin', token: T.admin, role: 'admin' },
  { name: 'worker', token: T.worker, role: 'worker', workers: ['rs-w-*'] },
  { name: 'viewer', token: T.viewer, role: 'viewer' },
  { name: 'acme-viewer', token: T.acmeViewer, role: 'viewer', scopes: [{ tenant: 'acme' }] },
  { name: 'acme', token: T.acme, role: 'operator', scopes: [{ tenant: 'acme' }], resume: true },
  { name: 'globex', token: T.globex, role: 'operator', scopes: [{ tenant: 'globex' }] },
  { name: 'refund', token: T.refund, role: 'operator', scopes: [{ capability: 'refund' }] },
];

/** The halts placed, by name: each reader's expected view is a subset of these. */
const HALTS = {
  acme: { tenant: 'acme' },
  acmeChat: { tenant: 'acme', feature: 'chat' },
  globex: { tenant: 'globex' },
  globexRefund: { tenant: 'globex', capability: 'refund' },
  refundAll: { capability: 'refund' },
  global: {},
} as const;
type Halt = keyof typeof HALTS;

/** Who sees which halt (KS-17.4.1: compatible with one of its scopes, or reads everything). */
const SEES: Record<Who, Halt[]> = {
  admin: ['acme', 'acmeChat', 'globex', 'globexRefund', 'refundAll', 'global'],
  worker: ['acme', 'acmeChat', 'globex', 'globexRefund', 'refundAll', 'global'],
  viewer: ['acme', 'acmeChat', 'globex', 'globexRefund', 'refundAll', 'global'],
  acmeViewer: ['acme', 'acmeChat', 'refundAll', 'global'],
  acme: ['acme', 'acmeChat', 'refundAll', 'global'],
  globex: ['globex', 'globexRefund', 'refundAll', 'global'],
  refund: ['acme', 'acmeChat', 'globex', 'globexRefund', 'refundAll', 'global'],
};

let cp: ControlPlane;
const placed = new Map<number, Halt>();

async function api(who: Who, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${cp.url}${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${T[who]}`,
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
  });
}

async function halt(name: Halt): Promise<FlipRecord> {
  const res = await api('admin', '/v1/flips', {
    method: 'POST',
    body: JSON.stringify({
      action: 'halt',
      selector: HALTS[name],
      reason: `secret reason of ${name}`,
    }),
  });
  expect(res.status).toBeLessThan(300);
  const flip = ((await res.json()) as { flip: FlipRecord }).flip;
  placed.set(flip.seq, name);
  return flip;
}

beforeAll(async () => {
  cp = await startControlPlane({
    store: new MemoryFlipLogStore(),
    port: 0,
    auth: new TokenAuthenticator({ tokens: SPECS }),
    heartbeatMs: 100,
    maxFlipsPerSecond: 100_000,
    logger: { info() {}, warn() {}, error() {} },
  });
  // The console's routes too: GET /v1/flips/:seq/fleet is one of them.
  mountConsole(cp);
  for (const name of Object.keys(HALTS) as Halt[]) await halt(name);
});
afterAll(() => cp.close());

const names = (selectors: { selector: Record<string, string> }[]): Halt[] =>
  selectors
    .map((h) => {
      const hit = (Object.keys(HALTS) as Halt[]).find(
        (n) => JSON.stringify(HALTS[n]) === JSON.stringify(h.selector),
      );
      if (hit === undefined) throw new Error(`unknown selector ${JSON.stringify(h.selector)}`);
      return hit;
    })
    .sort();

/** The events of a stream until `enough` holds, as `{ event, id, data }`. */
async function streamEvents(
  who: Who,
  enough: (events: { event: string; id?: string; data: string }[]) => boolean,
  query = '',
): Promise<{ event: string; id?: string; data: string }[]> {
  const ac = new AbortController();
  const res = await fetch(`${cp.url}/v1/stream${query}`, {
    headers: { authorization: `Bearer ${T[who]}` },
    signal: ac.signal,
  });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const events: { event: string; id?: string; data: string }[] = [];
  let text = '';
  const deadline = Date.now() + 10_000;
  try {
    while (!enough(events)) {
      if (Date.now() > deadline) throw new Error(`stream of ${who}: ${JSON.stringify(events)}`);
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
      let end: number;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        const e: { event: string; id?: string; data: string } = { event: 'message', data: '' };
        for (const line of block.split('\n')) {
          const c = line.indexOf(':');
          const field = line.slice(0, c);
          const value = line.slice(c + 1).replace(/^ /, '');
          if (field === 'event') e.event = value;
          else if (field === 'id') e.id = value;
          else if (field === 'data') e.data = value;
        }
        if (e.data !== '') events.push(e);
      }
    }
  } finally {
    ac.abort();
  }
  return events;
}

describe('KS-17.4.1 each reader reads exactly the flips, reasons and halts its scopes allow', () => {
  for (const who of Object.keys(T) as Who[]) {
    it(`${who}: GET /v1/state lists its halts only; the seq is everyone's`, async () => {
      const res = await api(who, '/v1/state');
      expect(res.status).toBe(200);
      const state = (await res.json()) as { seq: number; halts: FlipRecord[] };
      expect(state.seq).toBe(placed.size);
      expect(names(state.halts)).toEqual([...SEES[who]].sort());
    });

    it(`${who}: GET /v1/flips holds its flips only, no other tenant's reason in the answer`, async () => {
      const res = await api(who, '/v1/flips?after=0&limit=100');
      expect(res.status).toBe(200);
      const text = await res.text();
      const page = JSON.parse(text) as { flips: FlipRecord[]; head: number; next: number | null };
      expect(names(page.flips)).toEqual([...SEES[who]].sort());
      expect(page.head).toBe(placed.size);
      expect(page.next).toBeNull();
      for (const n of Object.keys(HALTS) as Halt[]) {
        if (!SEES[who].includes(n)) expect(text).not.toContain(`secret reason of ${n}`);
      }
    });

    it(`${who}: the stream's snapshot holds its halts only`, async () => {
      const events = await streamEvents(who, (e) => e.some((x) => x.event === 'snapshot'));
      const snap = JSON.parse(events.find((e) => e.event === 'snapshot')!.data) as {
        seq: number;
        halts: FlipRecord[];
      };
      expect(snap.seq).toBe(placed.size);
      expect(names(snap.halts)).toEqual([...SEES[who]].sort());
    });
  }

  it("an operator's live stream: its tenant's flip arrives whole, another tenant's as a skip (seq and hash only)", async () => {
    const seen = streamEvents(
      'acme',
      (e) => e.filter((x) => x.event === 'flip' || x.event === 'skip').length >= 2,
    );
    // Let the stream open (its snapshot) before flipping.
    await new Promise((r) => setTimeout(r, 200));
    const other = await halt('globex'); // an equal halt again: a new record all the same
    void other;
    const mine = await api('admin', '/v1/flips', {
      method: 'POST',
      body: JSON.stringify({
        action: 'resume',
        selector: HALTS.acmeChat,
        reason: 'acme chat is fine',
      }),
    });
    expect(mine.status).toBeLessThan(300);
    const events = (await seen).filter((x) => x.event === 'flip' || x.event === 'skip');
    const [skip, flip] = events;
    expect(skip!.event).toBe('skip');
    expect(JSON.parse(skip!.data)).toEqual({ seq: other.seq, hash: other.hash });
    expect(skip!.data).not.toContain('globex');
    expect(skip!.id).toBe(String(other.seq));
    expect(flip!.event).toBe('flip');
    expect((JSON.parse(flip!.data) as FlipRecord).selector).toEqual(HALTS.acmeChat);
  });

  it('a stream acting as a worker reads everything, whatever the scopes (it enforces every halt)', async () => {
    const events = await streamEvents(
      'worker',
      (e) => e.some((x) => x.event === 'snapshot'),
      '?worker=rs-w-1',
    );
    const snap = JSON.parse(events.find((e) => e.event === 'snapshot')!.data) as {
      halts: FlipRecord[];
    };
    expect(snap.halts.some((h) => h.selector['tenant'] === 'globex')).toBe(true);
  });
});

describe('KS-17.4.3 OFREP answers a scoped reader only for contexts its scopes allow', () => {
  const evaluate = (who: Who, context: Record<string, string>, key = 'kill-switch') =>
    api(who, `/ofrep/v1/evaluate/flags/${key}`, {
      method: 'POST',
      body: JSON.stringify({ context }),
    });
  const bulk = (who: Who, context: Record<string, string>) =>
    api(who, '/ofrep/v1/evaluate/flags', { method: 'POST', body: JSON.stringify({ context }) });

  it("an acme operator evaluating globex's context is refused (403), single and bulk, and no globex reason is in the answer", async () => {
    for (const res of [
      await evaluate('acme', { tenant: 'globex' }),
      await bulk('acme', { tenant: 'globex', capability: 'refund' }),
      await evaluate('acmeViewer', { tenant: 'globex' }),
    ]) {
      expect(res.status).toBe(403);
      const text = await res.text();
      expect(text).toMatch(/may not evaluate context/);
      expect(text).not.toMatch(/secret reason of globex/);
    }
  });

  it('an acme operator evaluates its own contexts and sees the halts that can stop them, with their reasons', async () => {
    const own = await evaluate('acme', { tenant: 'acme', feature: 'chat' }, 'kill-switch.tenant');
    expect(own.status).toBe(200);
    const body = (await own.json()) as { value: boolean; metadata: Record<string, unknown> };
    expect(body.value).toBe(true);
    expect(body.metadata['reason']).toBe('secret reason of acme');
    const all = await bulk('acme', { tenant: 'acme' });
    expect(all.status).toBe(200);
    expect(await all.text()).not.toMatch(/globex/);
  });

  it('readers of everything evaluate any context: admin, worker, an unscoped viewer', async () => {
    for (const who of ['admin', 'worker', 'viewer'] as const) {
      const res = await evaluate(who, { tenant: 'globex' }, 'kill-switch.tenant');
      expect(res.status, who).toBe(200);
      expect(((await res.json()) as { metadata: { reason: string } }).metadata.reason).toBe(
        'secret reason of globex',
      );
    }
  });
});

describe('KS-17.4.1 decided, not filtered: GET /v1/workers and GET /v1/flips/:seq/fleet carry worker ids and positions, no flip content', () => {
  it("an acme operator reads the workers list and a globex flip's fleet answer, which hold no selector and no reason", async () => {
    const globexSeq = [...placed].find(([, n]) => n === 'globex')![0];
    const workers = await api('acme', '/v1/workers');
    expect(workers.status).toBe(200);
    const fleet = await api('acme', `/v1/flips/${globexSeq}/fleet`);
    expect(fleet.status).toBe(200);
    const text = await fleet.text();
    const answer = JSON.parse(text) as Record<string, unknown>;
    expect(answer['seq']).toBe(globexSeq);
    expect(answer).not.toHaveProperty('selector');
    expect(answer).not.toHaveProperty('reason');
    expect(text).not.toMatch(/secret reason|globex/);
  });
});

describe('KS-17.4.2 a filtered log pages by a cursor over the log', () => {
  it("pages of one flip: next names the last record examined, and paging to null yields exactly the reader's flips", async () => {
    const seen: number[] = [];
    let after = 0;
    const cursors: number[] = [];
    for (let pages = 0; pages < 50; pages++) {
      const res = await api('globex', `/v1/flips?after=${after}&limit=1`);
      const page = (await res.json()) as { flips: FlipRecord[]; next: number | null };
      expect(page.flips.length).toBeLessThanOrEqual(1);
      seen.push(...page.flips.map((f) => f.seq));
      if (page.next === null) break;
      // The cursor moves forward and never past a record the page returned.
      expect(page.next).toBeGreaterThan(after);
      if (page.flips.length === 1) expect(page.next).toBe(page.flips[0]!.seq);
      cursors.push(page.next);
      after = page.next;
    }
    const all = (await (await api('admin', '/v1/flips?after=0&limit=1000')).json()) as {
      flips: FlipRecord[];
    };
    const globexMay = all.flips
      .filter((f) => {
        const t = f.selector['tenant'];
        return t === undefined || t === 'globex';
      })
      .map((f) => f.seq);
    expect(seen).toEqual(globexMay);
    expect(cursors.length).toBeGreaterThan(0);
  });
});

describe('KS-17.4.1 the CLI follows: killswitch log and status with a scoped token', () => {
  it("an acme operator's killswitch log and status show acme's flips and halts, never globex's", async () => {
    const env = { KILLSWITCH_URL: cp.url, KILLSWITCH_TOKEN: T.acme };
    const log = await runCli(['log', '--limit', '1000'], env);
    expect(log.code, log.stderr).toBe(0);
    expect(log.stdout).toContain('secret reason of acme');
    expect(log.stdout).not.toContain('globex');
    const status = await runCli(['status'], env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('acme');
    expect(status.stdout).not.toContain('globex');
    // A page of one record examined, none of them acme's: the CLI says so and how to go on.
    const globexSeq = [...placed].find(([, n]) => n === 'globex')![0];
    const page = await runCli(['log', '--after', String(globexSeq - 1), '--limit', '1'], env);
    expect(page.code, page.stderr).toBe(0);
    expect(page.stdout).not.toContain('globex');
  });
});
