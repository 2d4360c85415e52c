import { describe, expect, it } from 'vitest';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  type FlipRecord,
} from '../../src/model/flip-record.js';
import type { ReadOptions } from '../../src/store/flip-log-store.js';
import { FollowerPhase, LogFollower, type FollowedLog } from '../../src/server/log-follower.js';

/** A valid chain of `n` halts (seq 1..n), hashed like any store's. */
function chain(n: number, tag = 't'): FlipRecord[] {
  const out: FlipRecord[] = [];
  let head = { seq: 0, hash: GENESIS_HASH };
  for (let i = 1; i <= n; i++) {
    const flip = parseFlipInput({
      id: `${tag}-${i}`,
      actor: 'ops',
      action: 'halt',
      selector: { tenant: `${tag}${i}` },
      reason: `record ${i}`,
    });
    const r = chainRecord(flip, head, new Date(Date.UTC(2026, 11, 5, 20, 0, i)));
    out.push(r);
    head = r;
  }
  return out;
}

/**
 * A log whose reads the test answers by hand and whose notifications it sends itself, so every
 * state of the follower is reached in order, without timers.
 */
class ScriptedLog implements FollowedLog {
  readonly kind = 'scripted';
  listener: ((r: FlipRecord) => void) | undefined;
  readonly reads: {
    options: ReadOptions | undefined;
    answer: (r: FlipRecord[] | Error) => void;
  }[] = [];

  read(options?: ReadOptions): Promise<FlipRecord[]> {
    return new Promise((resolve, reject) => {
      this.reads.push({
        options,
        answer: (r) => (r instanceof Error ? reject(r) : resolve(r)),
      });
    });
  }

  subscribe(listener: (r: FlipRecord) => void): () => void {
    this.listener = listener;
    return () => {
      this.listener = undefined;
    };
  }

  deliver(r: FlipRecord): void {
    this.listener!(r);
  }
}

function follower(log: ScriptedLog) {
  const applied: number[] = [];
  const broken: string[] = [];
  const lines: string[] = [];
  const f = new LogFollower({
    log,
    maxReplay: 100,
    onApplied: (r, event) => {
      expect(event.toString()).toContain(`id: ${r.seq}\n`);
      applied.push(r.seq);
    },
    onBroken: (why) => broken.push(why),
    logger: { warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) },
  });
  return { f, applied, broken, lines };
}

const flush = () => new Promise<void>((r) => setImmediate(r));

describe('LogFollower (KS-6.4.4, KS-6.4.5): the phases of following a flip log', () => {
  it('starting: records delivered while the log is read wait, then apply in order; following', async () => {
    const log = new ScriptedLog();
    const { f, applied } = follower(log);
    const recs = chain(4);
    const started = f.start('log-a');
    expect(f.phase).toBe(FollowerPhase.STARTING);
    // Delivered during the read: seq 2 (also in the read) and 3, 4 (after it).
    log.deliver(recs[1]!);
    log.deliver(recs[2]!);
    log.deliver(recs[3]!);
    expect(applied).toEqual([]);
    log.reads[0]!.answer(recs.slice(0, 2));
    await started;
    expect(f.phase).toBe(FollowerPhase.FOLLOWING);
    expect(applied).toEqual([3, 4]);
    expect(f.position()).toEqual({ logId: 'log-a', seq: 4, hash: recs[3]!.hash });
    expect(f.hasId('t-1')).toBe(true);
    expect(f.appliedHash(2)).toBe(recs[1]!.hash);
    expect(f.replaySince(2, 4)?.map((b) => b.toString().match(/id: (\d+)/)![1])).toEqual([
      '3',
      '4',
    ]);
  });

  it('resyncing on a gap: reads what is missing after the head, buffers what arrives, then follows', async () => {
    const log = new ScriptedLog();
    const { f, applied, lines } = follower(log);
    const recs = chain(6);
    const started = f.start('log-a');
    log.reads[0]!.answer(recs.slice(0, 1));
    await started;
    log.deliver(recs[3]!); // seq 4 after head 1: a gap
    expect(f.phase).toBe(FollowerPhase.RESYNCING);
    expect(log.reads[1]!.options).toEqual({ after: 1 });
    expect(
      lines.some((l) => l.startsWith('warn stream out of order (expected seq 2, received 4)')),
    ).toBe(true);
    log.deliver(recs[4]!); // seq 5 arrives while resyncing: buffered
    log.deliver(recs[5]!);
    expect(applied).toEqual([]);
    log.reads[1]!.answer(recs.slice(1, 4));
    await flush();
    expect(f.phase).toBe(FollowerPhase.FOLLOWING);
    expect(applied).toEqual([2, 3, 4, 5, 6]);
    expect(f.state.seq).toBe(6);
  });

  it('a record that does not chain at head + 1 resyncs from the store, which holds the right one', async () => {
    const log = new ScriptedLog();
    const { f, applied, broken } = follower(log);
    const recs = chain(2);
    const other = chain(2, 'x');
    const started = f.start('log-a');
    log.reads[0]!.answer(recs.slice(0, 1));
    await started;
    log.deliver(other[1]!); // seq 2 whose prev is not the hash of our seq 1
    expect(f.phase).toBe(FollowerPhase.RESYNCING);
    log.reads[1]!.answer([recs[1]!]);
    await flush();
    expect(applied).toEqual([2]);
    expect(broken).toEqual([]);
    expect(f.state.hash).toBe(recs[1]!.hash);
  });

  it('the same record seen again is ignored; another record at an applied seq breaks it for good', async () => {
    const log = new ScriptedLog();
    const { f, applied, broken, lines } = follower(log);
    const recs = chain(3);
    const forked = chain(3, 'x');
    const started = f.start('log-a');
    log.reads[0]!.answer(recs);
    await started;
    log.deliver(recs[1]!);
    expect(f.phase).toBe(FollowerPhase.FOLLOWING);
    log.deliver(forked[1]!);
    expect(f.phase).toBe(FollowerPhase.BROKEN);
    expect(broken).toHaveLength(1);
    expect(broken[0]).toContain('forked');
    expect(broken[0]).toContain(recs[1]!.hash.slice(0, 12));
    expect(broken[0]).toContain(forked[1]!.hash.slice(0, 12));
    expect(f.broken).toBe(broken[0]);
    expect(lines.at(-1)).toMatch(/^error .*not vouching for the state any more$/);
    // Nothing applies any more, and no wait succeeds, not even for a seq already applied.
    log.deliver(chain(4)[3]!);
    expect(applied).toEqual([]);
    await expect(f.waitApplied(2, recs[1]!.hash, 10_000)).resolves.toBe(false);
    // A second divergence is not reported again.
    log.deliver(forked[2]!);
    expect(broken).toHaveLength(1);
  });

  it('broken when the store cannot be read during a resync, or answers a gap', async () => {
    for (const answer of [new Error('connection reset'), chain(5).slice(3, 5)]) {
      const log = new ScriptedLog();
      const { f, broken } = follower(log);
      const recs = chain(5);
      const started = f.start('log-a');
      log.reads[0]!.answer(recs.slice(0, 2));
      await started;
      log.deliver(recs[4]!);
      log.reads[1]!.answer(answer);
      await flush();
      expect(f.phase).toBe(FollowerPhase.BROKEN);
      expect(broken[0]).toMatch(
        answer instanceof Error
          ? /^cannot follow the flip log: connection reset$/
          : /^cannot follow the flip log: store returned seq 4$/,
      );
      expect(f.state.seq).toBe(2);
    }
  });

  it('waitApplied: true when that record is applied at its seq, false for another hash; a pending wait answers on the apply', async () => {
    const log = new ScriptedLog();
    const { f } = follower(log);
    const recs = chain(3);
    const started = f.start('log-a');
    log.reads[0]!.answer(recs.slice(0, 1));
    await started;
    await expect(f.waitApplied(1, recs[0]!.hash, 10_000)).resolves.toBe(true);
    await expect(f.waitApplied(1, chain(1, 'x')[0]!.hash, 10_000)).resolves.toBe(false);
    await expect(f.waitApplied(1, undefined, 10_000)).resolves.toBe(true);
    // Answered by the apply, long before its 60 s bound.
    const pending = f.waitApplied(3, recs[2]!.hash, 60_000);
    log.deliver(recs[1]!);
    log.deliver(recs[2]!);
    await expect(pending).resolves.toBe(true);
    // A pending wait answers false when the follower breaks or closes.
    const never = f.waitApplied(9, undefined, 60_000);
    f.close();
    expect(f.phase).toBe(FollowerPhase.CLOSED);
    await expect(never).resolves.toBe(false);
    expect(log.listener).toBeUndefined();
  });

  it('diverge() (proof from an acknowledgement, KS-6.4.3) breaks it and answers pending waits', async () => {
    const log = new ScriptedLog();
    const { f, broken } = follower(log);
    const started = f.start('log-a');
    log.reads[0]!.answer(chain(1));
    await started;
    const pending = f.waitApplied(5, undefined, 60_000);
    const { Divergence, LogDivergedError } = await import('../../src/protocol/log-position.js');
    f.diverge(
      new LogDivergedError(
        Divergence.BEHIND,
        { logId: 'log-a', seq: 5, hash: 'a'.repeat(64) },
        { logId: 'log-a', seq: 1, hash: 'b'.repeat(64) },
        { applied: 'worker w1 applied', seen: 'the scripted store holds' },
      ),
    );
    await expect(pending).resolves.toBe(false);
    expect(f.phase).toBe(FollowerPhase.BROKEN);
    expect(broken[0]).toContain('worker w1 applied');
  });
});
