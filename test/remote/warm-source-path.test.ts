import { describe, expect, it, vi } from 'vitest';
import {
  exerciseSourcePath,
  warmUpStreamRecords,
} from '../../providers/remote/remote-flip-source.js';
import { warmUpWireRecords } from '../../src/model/warm-flip-path.js';
import { parseFlipRecord, verifyRecordHash, GENESIS_HASH } from '../../src/model/index.js';

describe('KS-6.3.12 the stream path of a flip warmed on a private source', () => {
  it('the private log is a valid chain from genesis: halts at every level, then the resumes', () => {
    const records = warmUpWireRecords().map((d) => parseFlipRecord(JSON.parse(d)));
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(records[0]!.prev).toBe(GENESIS_HASH);
    for (let i = 1; i < records.length; i++) expect(records[i]!.prev).toBe(records[i - 1]!.hash);
    expect(records.every((r) => verifyRecordHash(r))).toBe(true);
    expect(records.map((r) => r.action)).toEqual([
      ...Array<string>(records.length / 2).fill('halt'),
      ...Array<string>(records.length / 2).fill('resume'),
    ]);
  });

  it('applies every private record from memory (its fetch is its own; the URL does not resolve) and stops itself', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    try {
      expect(await exerciseSourcePath()).toBe(warmUpStreamRecords().length);
      expect(fetchSpy).not.toHaveBeenCalled();
    } finally {
      fetchSpy.mockRestore();
    }
  });

  it('runs the path often enough to leave the interpreter: the private log, then 100 halt and resume pairs, one chain', () => {
    const wire = warmUpWireRecords();
    const stream = warmUpStreamRecords();
    expect(stream.slice(0, wire.length)).toEqual(wire);
    expect(stream.length).toBe(wire.length + 200);
    const records = stream.map((d) => parseFlipRecord(JSON.parse(d)));
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    for (let i = 1; i < records.length; i++) expect(records[i]!.prev).toBe(records[i - 1]!.hash);
    expect(records.every((r) => verifyRecordHash(r))).toBe(true);
    const extra = records.slice(wire.length);
    expect(extra.map((r) => r.action)).toEqual(
      Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 'halt' : 'resume')),
    );
    // Nothing in it names a real tenant, run or capability.
    expect(new Set(extra.map((r) => JSON.stringify(r.selector)))).toEqual(
      new Set([JSON.stringify({ tenant: 'warm-up' })]),
    );
  });
});
