import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlaneClient } from '../../src/client/control-plane-client.js';
import { checkFleet, whyNotFresh } from '../../src/drill/run/fleet-check.js';
import type { ControlPlane } from '../../src/server/index.js';
import type { WorkerInfo } from '../../src/protocol/answers.js';
import { SseReader } from '../server/sse-reader.js';
import { TOKENS, bearer, call, startTestServer } from '../server/helpers.js';
import { readClock } from '../fixtures/clock.js';

let cp: ControlPlane | undefined;
let reader: SseReader | undefined;
afterEach(async () => {
  reader?.close();
  reader = undefined;
  await cp?.close();
  cp = undefined;
});

const worker = (over: Partial<WorkerInfo>): WorkerInfo => ({
  id: 'w1',
  connected: true,
  connections: 1,
  lastAckSeq: 0,
  lastAckAt: new Date(10_000).toISOString(),
  lag: 0,
  leaseExpiresAt: new Date(13_100).toISOString(),
  stale: false,
  ...over,
});

describe('KS-9.3.1 before a lever every expected worker must be connected, leased and have acknowledged within timings.freshWithinMs', () => {
  it('names why a listed worker is not fresh', () => {
    expect(whyNotFresh(worker({}), 3_000, 12_999)).toBeUndefined();
    expect(whyNotFresh(worker({ connected: false, connections: 0 }), 3_000, 10_001)).toBe(
      'no open stream',
    );
    expect(whyNotFresh(worker({ stale: true }), 3_000, 10_001)).toBe('its lease ran out (stale)');
    expect(whyNotFresh(worker({ lastAckAt: null, lastAckSeq: null }), 3_000, 10_001)).toBe(
      'it never acknowledged',
    );
    // The lease has not run out, but the worker has been silent longer than the scenario allows.
    expect(whyNotFresh(worker({}), 1_000, 12_500)).toBe(
      'its last acknowledgement is 2500 ms old (freshWithinMs 1000)',
    );
  });

  it('reads GET /v1/workers and flags a silent worker whose lease still runs', async () => {
    let now = 1_000_000;
    // A long lease: only freshWithinMs can notice the silence.
    ({ cp } = await startTestServer({ staleAfterMs: 60_000, clock: readClock(() => now) }));
    ({ reader } = await SseReader.open(
      `${cp.url}/v1/stream?worker=w1&release=v1`,
      bearer(TOKENS.worker),
    ));
    await reader.next();
    const ack = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'w1', release: 'v1', seq: 0 },
    });
    expect(ack.status).toBe(200);
    const client = new ControlPlaneClient({ url: cp.url, token: TOKENS.viewer });

    now += 500;
    expect(
      await checkFleet(
        client,
        ['w1', 'w9'],
        3_000,
        readClock(() => now),
      ),
    ).toEqual([{ id: 'w9', why: 'never connected to this control plane' }]);

    now += 4_500;
    expect(
      await checkFleet(
        client,
        ['w1'],
        3_000,
        readClock(() => now),
      ),
    ).toEqual([{ id: 'w1', why: 'its last acknowledgement is 5000 ms old (freshWithinMs 3000)' }]);
    // The same silence passes a scenario that allows it.
    expect(
      await checkFleet(
        client,
        ['w1'],
        10_000,
        readClock(() => now),
      ),
    ).toEqual([]);
  });
});
