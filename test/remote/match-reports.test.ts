import { OpenFeature } from '@openfeature/server-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RemoteFlipSource } from '../../providers/remote/index.js';
import { formatFleet, matchedNothingWarning } from '../../src/cli/internal/format.js';
import { ControlPlaneClient } from '../../src/client/index.js';
import { mountConsole } from '../../src/console/index.js';
import { HaltedError } from '../../src/errors.js';
import { EffectGuard } from '../../src/guard/index.js';
import { looksLike, matchActivity, resetActivity } from '../../src/guard/worker-activity.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import { parseAcks } from '../../src/protocol/acks.js';
import type { FlipFleetStatus } from '../../src/protocol/answers.js';
import { TOKENS, startTestServer } from '../server/helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
beforeEach(() => resetActivity());
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  resetActivity();
});

/** A worker process in miniature: a remote source, a provider and a guard, fresh. */
async function worker(url: string, id: string): Promise<EffectGuard> {
  const source = new RemoteFlipSource({
    urls: [url],
    token: TOKENS.worker,
    workerId: id,
    staleAfterMs: 1000,
    heartbeatMs: 200,
    logger: { warn: () => {} },
  });
  const provider = new KillSwitchProvider({ source, logger: { warn: () => {} } });
  const domain = `match-${id}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  cleanups.push(() => provider.onClose());
  await provider.waitUntilFresh({ timeoutMs: 5000 });
  const guard = new EffectGuard({
    client: OpenFeature.getClient(domain),
    ledger: new MemorySideEffectLedger(),
  });
  cleanups.push(() => guard.close());
  return guard;
}

describe('KS-16.4.1 KS-16.4.2 a halt that matched nothing is reported as such', () => {
  it('over the wire: --tenant ACME matches nothing and names acme; --tenant acme counts the call in flight', async () => {
    const { cp } = await startTestServer({ staleAfterMs: 1000, heartbeatMs: 200 });
    cleanups.push(() => cp.close());
    const guard = await worker(cp.url, 'w-match-1');
    // Work for tenant acme: one effect done (a recent context), one in flight until aborted.
    await guard.run(
      { context: { tenant: 'acme' }, runId: 'r1', step: 'a', capability: 'email.send' },
      async () => 'sent',
    );
    let release!: () => void;
    const inFlight = guard
      .run(
        { context: { tenant: 'acme' }, runId: 'r2', step: 'b', capability: 'email.send' },
        () => new Promise<string>((r) => (release = () => r('late'))),
      )
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));

    const client = new ControlPlaneClient({ url: cp.url, token: TOKENS.admin });
    const wrong = await client.flip({
      action: 'halt',
      selector: { tenant: 'ACME' },
      reason: 'typo',
      wait: 5000,
    });
    expect(wrong.fleet?.complete).toBe(true);
    expect(wrong.fleet?.matched).toEqual({
      workers: 1,
      inFlight: 0,
      queued: 0,
      recent: 0,
      similar: ['acme'],
    });
    expect(matchedNothingWarning(wrong.fleet, wrong.flip.selector)).toBe(
      'WARNING: no worker has seen tenant ACME: the halt matched no call in flight, no queued task and no context evaluated in the last 10 minutes on 1 worker(s); did you mean acme?',
    );

    const right = await client.flip({
      action: 'halt',
      selector: { tenant: 'acme' },
      reason: 'real',
      wait: 5000,
    });
    expect(right.fleet?.matched).toMatchObject({ workers: 1, inFlight: 1, queued: 0 });
    expect(right.fleet!.matched!.recent).toBeGreaterThanOrEqual(1);
    expect(matchedNothingWarning(right.fleet, right.flip.selector)).toBeUndefined();
    expect(formatFleet(right.fleet).at(-1)).toMatch(
      /^matched on 1 reporting worker\(s\): 1 in flight, 0 queued, \d+ recent context\(s\)$/,
    );
    expect(await inFlight).toBeInstanceOf(HaltedError);
    release();
  });

  it('KS-17.4.1 near-miss values reach a scoped reader only when they cannot name another tenant', async () => {
    const { cp } = await startTestServer({ staleAfterMs: 1000, heartbeatMs: 200 });
    cleanups.push(() => cp.close());
    mountConsole(cp);
    const guard = await worker(cp.url, 'w-match-scoped');
    // Two tenants' work on one worker: acme's, and acmf's (a different tenant one letter away).
    for (const tenant of ['acme', 'acmf'])
      await guard.run(
        { context: { tenant }, runId: `r-${tenant}`, step: 'a', capability: 'email.send' },
        async () => 'sent',
      );
    // acme's operator halts its own tenant with a capability typo: nothing matches.
    const otto = new ControlPlaneClient({ url: cp.url, token: TOKENS.operator });
    const flip = await otto.flip({
      action: 'halt',
      selector: { tenant: 'acme', capability: 'email.sedn' },
      reason: 'typo',
      wait: 5000,
    });
    expect(flip.fleet?.complete).toBe(true);
    // The worker's report names acmf (near acme) and email.send (near email.sedn); acme's operator
    // is shown neither: a report does not say which attribute a value is, and acmf is a tenant.
    expect(flip.fleet?.matched).toEqual({
      workers: 1,
      inFlight: 0,
      queued: 0,
      recent: 0,
      similar: [],
    });
    const seq = flip.flip.seq;
    const fleetOf = async (token: string): Promise<FlipFleetStatus> => {
      const res = await fetch(`${cp.url}/v1/flips/${seq}/fleet`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      return (await res.json()) as FlipFleetStatus;
    };
    expect((await fleetOf(TOKENS.admin)).matched?.similar).toEqual(['acmf', 'email.send']);
    // A viewer without scopes reads everything (KS-17.4.1's decision for viewers).
    expect((await fleetOf(TOKENS.viewer)).matched?.similar).toEqual(['acmf', 'email.send']);
    // The fleet route carries no selector: a scoped reader gets none of them.
    expect((await fleetOf(TOKENS.operator)).matched).toMatchObject({ workers: 1, similar: [] });
    expect((await fleetOf(TOKENS.capOperator)).matched).toMatchObject({ workers: 1, similar: [] });
  });

  it('a process with no guard says nothing (unknown, not zero), and no warning is made of it', async () => {
    expect(matchActivity({ tenant: 'acme' })).toBeUndefined();
    const fleet: FlipFleetStatus = {
      seq: 1,
      appendedAt: '1970-01-01T00:00:00.000Z',
      applied: 2,
      acknowledged: [],
      laggards: [],
      alreadyStale: [],
      unenforced: [],
      complete: true,
      completeAt: '1970-01-01T00:00:00.001Z',
      completeAfterMs: 1,
      matched: { workers: 1, inFlight: 0, queued: 0, recent: 0, similar: [] },
    };
    // One of the two acknowledging workers did not report: it may have run acme.
    expect(matchedNothingWarning(fleet, { tenant: 'acme' })).toBeUndefined();
    expect(
      matchedNothingWarning({ ...fleet, applied: 1 }, { tenant: 'acme', feature: 'x' }),
    ).toMatch(/^WARNING: no worker has seen tenant acme and feature x: .*on 1 worker\(s\)$/);
    // A global halt always matches.
    expect(matchedNothingWarning({ ...fleet, applied: 1 }, {})).toBeUndefined();
  });

  it('the ack schema takes match reports and refuses bad ones; near misses are case and small typos', () => {
    expect(
      parseAcks({
        workerId: 'w1',
        seq: 3,
        matched: [{ seq: 3, inFlight: 0, queued: 0, recent: 0, similar: ['acme'] }],
      })[0]!.matched,
    ).toHaveLength(1);
    expect(() =>
      parseAcks({
        workerId: 'w1',
        seq: 3,
        matched: [{ seq: 3, inFlight: -1, queued: 0, recent: 0 }],
      }),
    ).toThrow(/matched/);
    expect(() =>
      parseAcks({
        workerId: 'w1',
        seq: 3,
        matched: [{ seq: 3, inFlight: 0, queued: 0, recent: 0, x: 1 }],
      }),
    ).toThrow();
    expect(looksLike('ACME', 'acme')).toBe(true);
    expect(looksLike('acme-corp', 'acme-crop')).toBe(true);
    expect(looksLike('acme', 'globex')).toBe(false);
    expect(looksLike('a', 'b')).toBe(true); // one edit on one character is still a slip
  });
});
