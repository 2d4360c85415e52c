import { describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { exerciseFlipRoute } from '../../src/server/internal/warm-flip-route.js';
import { TOKENS, startTestServer } from './helpers.js';

describe('The flip route is warmed on private objects at start (issue 19: the first flip is the one that matters)', () => {
  it('runs the halts and resumes of its private log through the follower, every time it is called', async () => {
    expect(await exerciseFlipRoute()).toBe(4);
    expect(await exerciseFlipRoute()).toBe(4);
  });

  it('leaves nothing behind in a started control plane: empty log, head 0, no worker, the first real flip is seq 1', async () => {
    const store = new MemoryFlipLogStore();
    const { cp } = await startTestServer({ store });
    try {
      expect(await store.read()).toEqual([]);
      expect(cp.snapshot().seq).toBe(0);
      expect(cp.snapshot().halts).toEqual([]);
      expect(cp.workers()).toEqual([]);
      expect(cp.fleetStatus(1)).toBeUndefined();
      const res = await fetch(`${cp.url}/v1/flips`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'halt', selector: { tenant: 'acme' }, reason: 'first' }),
      });
      expect(res.status).toBe(201);
      const answer = (await res.json()) as { flip: { seq: number; actor: string } };
      expect(answer.flip.seq).toBe(1);
      expect(answer.flip.actor).toBe('ada');
      expect((await store.read()).map((r) => r.seq)).toEqual([1]);
      expect(cp.snapshot().seq).toBe(1);
    } finally {
      await cp.close();
    }
  });
});
