import { afterEach, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import type { FlipInput, FlipRecord } from '../../src/model/index.js';
import type { ControlPlane } from '../../src/server/index.js';
import type {
  AppendResult,
  FlipLogStore,
  LogHead,
  ReadOptions,
  RecordListener,
} from '../../src/store/index.js';
import { SseReader } from './sse-reader.js';
import { TOKENS, bearer, call, halt, startTestServer } from './helpers.js';

/** A store whose notifications the test controls: it can hold them back, reorder them, or fail reads. */
class ControlledStore implements FlipLogStore {
  readonly kind = 'controlled';
  readonly inner = new MemoryFlipLogStore();
  listeners = new Set<RecordListener>();
  mute = false;
  failReads = false;
  open(): Promise<void> {
    return this.inner.open();
  }
  async append(input: FlipInput): Promise<AppendResult> {
    const r = await this.inner.append(input);
    if (!this.mute && !r.duplicate) for (const l of this.listeners) l(r.record);
    return r;
  }
  async read(options?: ReadOptions): Promise<FlipRecord[]> {
    if (this.failReads) throw new Error('disk on fire');
    return this.inner.read(options);
  }
  head(): Promise<LogHead> {
    return this.inner.head();
  }
  logId(): Promise<string> {
    return this.inner.logId();
  }
  subscribe(l: RecordListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(r: FlipRecord): void {
    for (const l of this.listeners) l(r);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

let cp: ControlPlane | undefined;
afterEach(async () => {
  await cp?.close();
  cp = undefined;
});

const flip = { actor: 'x', action: 'halt', reason: 'r' } as const;

describe('KS-5.1.11 the control plane follows the store in seq order', () => {
  it('fills a gap in notifications from the store and streams every record once, in order', async () => {
    const store = new ControlledStore();
    ({ cp } = await startTestServer({ store }));
    const { reader } = await SseReader.open(`${cp.url}/v1/stream`, bearer(TOKENS.viewer));
    expect((await reader.next()).event).toBe('snapshot');
    store.mute = true;
    await store.append({ ...flip, selector: { tenant: 'a' } });
    const { record: second } = await store.append({ ...flip, selector: { tenant: 'b' } });
    store.mute = false;
    store.emit(second); // seq 2 arrives while seq 1 never did
    const ids = [(await reader.nextNonHeartbeat()).id, (await reader.nextNonHeartbeat()).id];
    expect(ids).toEqual(['1', '2']);
    expect(cp.snapshot().seq).toBe(2);
    reader.close();
  });

  it('fails closed when it cannot fill a gap: streams end, flips, acks and state answer 503, healthz 503', async () => {
    const store = new ControlledStore();
    ({ cp } = await startTestServer({ store }));
    const { reader } = await SseReader.open(`${cp.url}/v1/stream`, bearer(TOKENS.viewer));
    await reader.next();
    store.mute = true;
    await store.append({ ...flip, selector: { tenant: 'a' } });
    const { record: second } = await store.append({ ...flip, selector: { tenant: 'b' } });
    store.failReads = true;
    store.emit(second);
    expect(await reader.ended(2000)).toBe(true);
    expect((await call(cp, 'GET', '/healthz')).status).toBe(503);
    const f = await call(cp, 'POST', '/v1/flips', { token: TOKENS.admin, body: halt('z') });
    expect(f.status).toBe(503);
    expect(f.json.error.code).toBe('KS_STORE_UNAVAILABLE');
    expect(
      (
        await call(cp, 'POST', '/v1/acks', {
          token: TOKENS.worker,
          body: { workerId: 'w', seq: 0 },
        })
      ).status,
    ).toBe(503);
    expect((await call(cp, 'GET', '/v1/state', { token: TOKENS.viewer })).status).toBe(503);
    expect((await call(cp, 'GET', '/v1/stream', { token: TOKENS.viewer })).status).toBe(503);
    expect((await store.inner.head()).seq).toBe(2);
  });
});
