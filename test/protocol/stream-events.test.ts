import { describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { canonicalJson } from '../../src/model/canonical-json.js';
import { encodeEvent, encodeFlipEvent } from '../../src/protocol/stream-events.js';

describe('KS-6.1.2 encoded events', () => {
  it('a flip event is its seq and the record’s canonical JSON, in a buffer of its own', async () => {
    const store = new MemoryFlipLogStore();
    const { record } = await store.append({
      actor: 'a',
      action: 'halt',
      selector: { tenant: 'é-ü' },
      reason: 'non-ASCII ✓',
    });
    const buf = encodeFlipEvent(record);
    expect(buf.toString('utf8')).toBe(
      `event: flip\nid: ${record.seq}\ndata: ${canonicalJson(record)}\n\n`,
    );
    // Not a slice of Node's shared pool: the replay ring keeps these (KS-13.7).
    expect(buf.buffer.byteLength).toBe(buf.length);
    expect(buf.byteOffset).toBe(0);
    expect(JSON.parse(buf.toString('utf8').split('data: ')[1]!)).toEqual({ ...record });
  });

  it('any event gets an exact buffer of its own', () => {
    const buf = encodeEvent('heartbeat', { head: 3, at: 1 });
    expect(buf.toString()).toBe('event: heartbeat\ndata: {"head":3,"at":1}\n\n');
    expect(buf.buffer.byteLength).toBe(buf.length);
  });
});
