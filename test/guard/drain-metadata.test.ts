import { afterEach, describe, expect, it } from 'vitest';
import { decide } from '../../src/guard/kill-decision.js';
import { killHarness, type KillHarness } from '../schedule/kill-harness.js';

const harnesses: KillHarness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
});

async function harness(): Promise<KillHarness> {
  const h = await killHarness();
  harnesses.push(h);
  return h;
}

const CTX = { tenant: 'acme', runId: 'run-1', capability: 'email.send' };

describe('KS-4.8.3 KillSwitchProvider says on `kill-switch` whether every matching halt is a drain halt', () => {
  it('drainOnly is true for drain halts only, false once a halt of another mode matches too', async () => {
    const h = await harness();
    const drain = await h.halt({ tenant: 'acme' }, 'drain');
    let d = await h.client.getBooleanDetails('kill-switch', true, CTX);
    expect(d.flagMetadata).toMatchObject({ seq: drain, mode: 'drain', drainOnly: true });
    await h.halt({ capability: 'email.send' }, 'drain');
    d = await h.client.getBooleanDetails('kill-switch', true, CTX);
    expect(d.flagMetadata).toMatchObject({ seq: drain, drainOnly: true });
    await h.halt({ runId: 'run-1' }, 'hold');
    d = await h.client.getBooleanDetails('kill-switch', true, CTX);
    // The lowest-seq match is still named; drainOnly now says another mode matches too.
    expect(d.flagMetadata).toMatchObject({ seq: drain, mode: 'drain', drainOnly: false });
    await h.resume({ runId: 'run-1' });
    d = await h.client.getBooleanDetails('kill-switch', true, CTX);
    expect(d.flagMetadata).toMatchObject({ seq: drain, drainOnly: true });
  });

  it('a lowest-seq match that is not a drain halt carries no drainOnly (and decide() says none)', async () => {
    const h = await harness();
    const discard = await h.halt({ tenant: 'acme' }, 'discard');
    await h.halt({ capability: 'email.send' }, 'drain');
    const d = await h.client.getBooleanDetails('kill-switch', true, CTX);
    expect(d.flagMetadata).toMatchObject({ seq: discard, mode: 'discard' });
    expect(d.flagMetadata).not.toHaveProperty('drainOnly');
    expect(decide(d)).not.toHaveProperty('drainOnly');
  });

  it('the per-level flags are unchanged (no drainOnly)', async () => {
    const h = await harness();
    await h.halt({ tenant: 'acme' }, 'drain');
    const d = await h.client.getBooleanDetails('kill-switch.tenant', true, CTX);
    expect(d.value).toBe(true);
    expect(d.flagMetadata).not.toHaveProperty('drainOnly');
  });

  it('decide() carries drainOnly and the running answer’s stateSeq into the KillDecision', async () => {
    const h = await harness();
    const running = decide(await h.client.getBooleanDetails('kill-switch', true, CTX));
    expect(running).toMatchObject({ halted: false, stateSeq: 0 });
    const seq = await h.halt({ tenant: 'acme' }, 'drain');
    const halted = decide(await h.client.getBooleanDetails('kill-switch', true, CTX));
    expect(halted).toMatchObject({ halted: true, drainOnly: true, flip: { seq, mode: 'drain' } });
    const other = decide(
      await h.client.getBooleanDetails('kill-switch', true, { ...CTX, tenant: 'other' }),
    );
    expect(other).toMatchObject({ halted: false, stateSeq: seq });
  });

  it('decide() ignores a drainOnly that comes without a flip, or is not exactly true', () => {
    const base = { flagKey: 'kill-switch', value: true, flagMetadata: {} } as const;
    expect(decide({ ...base, flagMetadata: { drainOnly: true } })).not.toHaveProperty('drainOnly');
    expect(
      decide({ ...base, flagMetadata: { seq: 3, mode: 'drain', drainOnly: 'true' } }),
    ).not.toHaveProperty('drainOnly');
  });
});
