/**
 * A flip-source consumer for the KS-13 suites: folds what a source delivers into a KillState
 * (which refuses a record that does not chain), records every delivery in order, and can judge
 * the whole history against the log: every flip applied once, in seq order, none skipped except
 * across a snapshot (a resynchronisation), and the final state equal to the log's.
 */
import { KillState, type FlipRecord, type KillSnapshot } from '../../../src/model/index.js';
import type { FlipSourceListener, SourceStatus } from '../../../src/source/index.js';

export class RecordingListener implements FlipSourceListener {
  state = KillState.empty();
  /** In delivery order: `s<seq>` for a snapshot, the seq for a flip. */
  readonly applied: (number | string)[] = [];
  /** Hash of each flip applied, by seq. */
  readonly hashes = new Map<number, string>();
  readonly statuses: { status: SourceStatus; at: number; detail: string | undefined }[] = [];
  readonly errors: string[] = [];

  onSnapshot(s: KillSnapshot): void {
    this.state = KillState.fromSnapshot(s);
    this.applied.push(`s${s.seq}`);
  }

  onFlip(r: FlipRecord): void {
    try {
      this.state.apply(r);
    } catch (err) {
      this.errors.push(`seq ${r.seq}: ${(err as Error).message}`);
    }
    if (this.hashes.has(r.seq)) this.errors.push(`seq ${r.seq} applied twice`);
    this.hashes.set(r.seq, r.hash);
    this.applied.push(r.seq);
  }

  onStatus(status: SourceStatus, detail?: string): void {
    this.statuses.push({ status, at: Date.now(), detail });
  }

  get status(): SourceStatus | undefined {
    return this.statuses.at(-1)?.status;
  }

  /** Snapshots applied (the first one, then one per resynchronisation). */
  get snapshots(): number {
    return this.applied.filter((a) => typeof a === 'string').length;
  }

  /**
   * Judges the history against the log. Returns undefined when every flip was applied once, in
   * order, none skipped except across a snapshot, with the log's hash, and the final state is the
   * log's; else what went wrong.
   */
  judge(log: readonly FlipRecord[]): string | undefined {
    if (this.errors.length > 0) return `fold errors: ${this.errors.slice(0, 5).join('; ')}`;
    let cur = -1;
    for (const a of this.applied) {
      if (typeof a === 'string') {
        const s = Number(a.slice(1));
        if (s < cur) return `snapshot ${s} went back from ${cur}`;
        cur = s;
      } else if (a !== cur + 1) {
        return `flip ${a} applied after ${cur} (missed, duplicated or reordered)`;
      } else cur = a;
    }
    for (const [seq, hash] of this.hashes) {
      const want = log[seq - 1];
      if (want === undefined || want.seq !== seq) return `applied seq ${seq}, not in the log`;
      if (want.hash !== hash) return `seq ${seq}: applied hash differs from the log's`;
    }
    const expected = KillState.fold(log).toSnapshot();
    const got = this.state.toSnapshot();
    if (got.seq !== expected.seq || got.hash !== expected.hash)
      return `state at seq ${got.seq}, log at ${expected.seq}`;
    return undefined;
  }
}
