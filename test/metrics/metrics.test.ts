import { OpenFeature } from '@openfeature/server-sdk';
import { register as globalRegistry, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { ErrorCode, HaltedError } from '../../src/errors.js';
import { HaltCause } from '../../src/model/halt-cause.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { GuardMetrics, mountMetrics, type ControlPlaneMetrics } from '../../src/metrics/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import { startControlPlane, type ControlPlane } from '../../src/server/index.js';
import type { SourceStatus } from '../../src/source/index.js';

const ADMIN = 'metrics-admin-token-0123456789';
const VIEWER = 'metrics-viewer-token-0123456789';
const WORKER = 'metrics-worker-token-0123456789';

let cp: ControlPlane | undefined;
let metrics: ControlPlaneMetrics | undefined;
const sources: RemoteFlipSource[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  metrics?.stop();
  await cp?.close();
  cp = undefined;
});

/** Parses the exposition into `name{labels} -> value` (labels as written). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function scrape(
  token: string | null = VIEWER,
): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${cp!.url}/metrics`, {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startAll(store: MemoryFlipLogStore): Promise<void> {
  cp = await startControlPlane({
    store,
    port: 0,
    heartbeatMs: 200,
    staleAfterMs: 2000,
    auth: new TokenAuthenticator({
      tokens: [
        { name: 'ada', token: ADMIN, role: 'admin' },
        { name: 'vera', token: VIEWER, role: 'viewer' },
        { name: 'wes', token: WORKER, role: 'worker', workers: ['metrics-worker'] },
      ],
    }),
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  metrics = await mountMetrics(cp, store);
}

describe('KS-11.2.1 GET /metrics', () => {
  it('needs a token (viewer is enough) and answers the Prometheus text format from its own registry', async () => {
    await startAll(new MemoryFlipLogStore());
    expect((await scrape(null)).status).toBe(401);
    const r = await scrape(VIEWER);
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(r.text).toContain('# TYPE killswitch_flips_total counter');
    expect(r.text).toContain('# TYPE killswitch_ack_latency_seconds histogram');
    // Nothing went to prom-client's global registry.
    expect(await globalRegistry.metrics()).not.toContain('killswitch_');
  });
});

describe('KS-11.2.2 the control plane metrics follow the log, the stream and the fleet', () => {
  it('counts flips by level and action (including the log before start), active halts, subscribers, acknowledgement latency and stale workers', async () => {
    const store = new MemoryFlipLogStore();
    await store.open();
    await store.append({
      actor: 'ada',
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'before start',
    });
    await startAll(store);

    const source = new RemoteFlipSource({
      urls: [cp!.url],
      token: WORKER,
      workerId: 'metrics-worker',
      release: 'v1',
      staleAfterMs: 2000,
      heartbeatMs: 200,
    });
    sources.push(source);
    let opened!: () => void;
    const open = new Promise<void>((r) => (opened = r));
    await source.start({
      onSnapshot: () => {},
      onFlip: () => {},
      onStatus: (s: SourceStatus) => {
        if (s === 'open') opened();
      },
    });
    await open;
    await until(() => cp!.tracker.workers().some((w) => w.lastAckSeq === 1 && !w.stale));

    const flip = async (body: object) => {
      const res = await fetch(`${cp!.url}/v1/flips`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'metrics test', wait: 5000, ...body }),
      });
      expect(res.status).toBe(201);
      return (await res.json()) as { fleet: { complete: boolean; applied: number } };
    };
    const a = await flip({ action: 'halt', selector: { capability: 'payments.refund' } });
    expect(a.fleet).toMatchObject({ complete: true, applied: 1 });
    await flip({ action: 'halt', selector: { runId: 'run-7' } });
    await flip({ action: 'resume', selector: { runId: 'run-7' } });
    // A connected worker that never acknowledged has no lease: stale.
    const disconnect = cp!.tracker.connect('frozen-worker', 'v0');

    const m = parse((await scrape()).text);
    expect(m.get('killswitch_flips_total{level="tenant",action="halt"}')).toBe(1);
    expect(m.get('killswitch_flips_total{level="capability",action="halt"}')).toBe(1);
    expect(m.get('killswitch_flips_total{level="run",action="halt"}')).toBe(1);
    expect(m.get('killswitch_flips_total{level="run",action="resume"}')).toBe(1);
    expect(m.get('killswitch_flips_total{level="global",action="halt"}')).toBe(0);
    expect(m.get('killswitch_active_halts{level="tenant"}')).toBe(1);
    expect(m.get('killswitch_active_halts{level="capability"}')).toBe(1);
    expect(m.get('killswitch_active_halts{level="run"}')).toBe(0);
    expect(m.get('killswitch_head_seq')).toBe(4);
    expect(m.get('killswitch_stream_subscribers')).toBe(1);
    // Three flips after start, one worker: three acknowledgements, three complete stops.
    expect(m.get('killswitch_ack_latency_seconds_count')).toBe(3);
    expect(m.get('killswitch_ack_latency_seconds_bucket{le="+Inf"}')).toBe(3);
    expect(m.get('killswitch_stop_complete_seconds_count')).toBe(3);
    expect(m.get('killswitch_workers_stale')).toBe(1);
    expect(m.get('killswitch_workers{state="stale"}')).toBe(1);
    expect(m.get('killswitch_workers{state="fresh"}')).toBe(1);
    expect(m.get('killswitch_worker_lag_max')).toBe(0);

    // A second scrape does not count the same acknowledgements again.
    const again = parse((await scrape()).text);
    expect(again.get('killswitch_ack_latency_seconds_count')).toBe(3);
    disconnect();
  });
});

describe('KS-11.2.3 guard counters in the worker own registry', () => {
  afterEach(async () => {
    await OpenFeature.close();
  });

  it('counts refusals and aborts of a real guard by capability and cause, and rethrows them unchanged', async () => {
    const registry = new Registry();
    const gm = new GuardMetrics({ registry });
    const store = new MemoryFlipLogStore();
    await store.open();
    await OpenFeature.setProviderAndWait('metrics-guard', KillSwitchProvider.fromStore(store));
    const guard = new EffectGuard({
      client: OpenFeature.getClient('metrics-guard'),
      ledger: new MemorySideEffectLedger(),
      logger: { warn: () => {} },
    });
    const run = gm.wrap(guard);
    const effect = (step: string) => ({
      context: { tenant: 'acme' },
      runId: 'r1',
      step,
      capability: 'payments.refund',
    });

    // Aborted: a halt lands while the effect runs.
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const inflight = run
      .run(effect('s1'), (signal) => {
        started();
        return new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason)),
        );
      })
      .catch((e: unknown) => e);
    await running;
    await store.append({
      actor: 'ada',
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'stop',
    });
    const aborted = await inflight;
    expect(aborted).toMatchObject({ code: ErrorCode.ABORTED });

    // Refused twice.
    for (const step of ['s2', 's3']) {
      const e = await run.run(effect(step), async () => 1).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(HaltedError);
      expect(e).toMatchObject({ code: ErrorCode.HALTED, haltCause: HaltCause.HALTED });
    }
    // Other errors are not counted.
    await expect(
      run.run({ ...effect('s4'), context: { tenant: 'other' } }, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');

    const m = parse(await registry.metrics());
    expect(
      m.get('killswitch_effects_refused_total{capability="payments.refund",cause="halted"}'),
    ).toBe(2);
    expect(
      m.get('killswitch_effects_aborted_total{capability="payments.refund",cause="halted"}'),
    ).toBe(1);
    await guard.close();
  });

  it('refuses to be built without a registry', () => {
    expect(() => new GuardMetrics({} as never)).toThrow(/registry/);
  });
});
