import { afterEach, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../src/server/index.js';
import { TOKENS, call, halt, startTestServer } from './helpers.js';

let cp: ControlPlane | undefined;
afterEach(async () => {
  await cp?.close();
  cp = undefined;
});

describe('KS-5.1.14 ?wait= on POST /v1/flips is honoured and validated, or refused', () => {
  it('waits for the fleet as long as the query says (a worker with a live lease that never acks)', async () => {
    ({ cp } = await startTestServer({ staleAfterMs: 3000 }));
    const ack = await call(cp, 'POST', '/v1/acks', {
      token: TOKENS.worker,
      body: { workerId: 'silent-1', seq: 0 },
    });
    expect(ack.status).toBe(200);
    const t0 = performance.now();
    const r = await call(cp, 'POST', '/v1/flips?wait=400', {
      token: TOKENS.operator,
      body: halt('acme'),
    });
    const waited = performance.now() - t0;
    expect(r.status).toBe(201);
    expect(r.json.fleet.complete).toBe(false);
    expect(r.json.fleet.laggards.map((l: { workerId: string }) => l.workerId)).toEqual([
      'silent-1',
    ]);
    // It waited (the lease runs for seconds, so only the wait ended it).
    expect(waited).toBeGreaterThanOrEqual(390);
  });

  it.each([
    ['wait=abc', /wait: must be a non-negative integer/],
    ['wait=-1', /wait: must be a non-negative integer/],
    ['wait=30001', /wait: must be at most 30000 ms/],
    ['wait=1&wait=2', /wait: given more than once/],
    ['timeout=5', /Unrecognized key/i],
  ])('refuses ?%s with 400 naming the problem, appending nothing', async (q, message) => {
    ({ cp } = await startTestServer());
    const r = await call(cp, 'POST', `/v1/flips?${q}`, {
      token: TOKENS.operator,
      body: halt('acme'),
    });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(message);
    expect(cp.snapshot().seq).toBe(0);
  });

  it('refuses a wait given in both the body and the query with different values', async () => {
    ({ cp } = await startTestServer());
    const r = await call(cp, 'POST', '/v1/flips?wait=100', {
      token: TOKENS.operator,
      body: halt('acme', { wait: 200 }),
    });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(/given as 200 in the body and 100 in the query/);
    expect(cp.snapshot().seq).toBe(0);
  });
});
