import { KillSwitchError, ErrorCode, LogCorruptError, ValidationError } from '../errors.js';
import { z } from 'zod';
import { toIssues } from '../internal/zod-issues.js';
import { MAX_RUN_DEPTH } from '../lineage/lineage.js';
import { GENESIS_HASH, flipRecordSchema, parseFlipRecord, type FlipRecord } from './flip-record.js';
import {
  LEVELS,
  SELECTOR_KEYS,
  levelOf,
  runPathProblem,
  shapeOf,
  type KillContext,
  type Level,
  type Selector,
  type SelectorKey,
} from './selector.js';

/**
 * The kill state at a point of the log, as it travels: the active halts and the head it folds.
 * A consumer that holds a snapshot at `seq` needs exactly the records after `seq`. KS-1.4.1
 */
export interface KillSnapshot {
  readonly seq: number;
  /** Hash of the record at `seq` ({@link GENESIS_HASH} at seq 0). */
  readonly hash: string;
  /** Active halt records, in seq order. */
  readonly halts: readonly FlipRecord[];
}

/** zod schema of a {@link KillSnapshot} as it travels on the wire (the stream's `snapshot` event). */
export const killSnapshotSchema = z.strictObject({
  seq: z.number().int().min(0),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  halts: z.array(flipRecordSchema),
});

/** What applying one record changed. */
export interface StateChange {
  readonly record: FlipRecord;
  /** False when the record changed nothing (a resume of nothing). */
  readonly changed: boolean;
  readonly level: Level;
}

/** The attribute names a shape names, in canonical order (precomputed for all 16 shapes). */
const SHAPE_KEYS: readonly (readonly SelectorKey[])[] = Array.from({ length: 16 }, (_, shape) =>
  SELECTOR_KEYS.filter((_k, i) => (shape & (1 << i)) !== 0),
);

/** The bit of `runId` in a shape. */
const RUN_BIT = 1 << SELECTOR_KEYS.indexOf('runId');

/**
 * A shape's key for a context: the named values joined with NUL (selector values cannot contain
 * control characters); a single value is used as is, so the common one-attribute lookup builds
 * no string. Undefined when the context lacks an attribute, or has one that is not a string.
 * `runId` stands in for the context's own run id (an ancestor's when probing a run path).
 */
function keyOf(
  shape: number,
  ctx: KillContext | Selector,
  runId: string | undefined = ctx.runId,
): string | undefined {
  const names = SHAPE_KEYS[shape]!;
  if (names.length === 1) {
    const v = names[0] === 'runId' ? runId : ctx[names[0]!];
    return typeof v === 'string' ? v : undefined;
  }
  let key = '';
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const v = name === 'runId' ? runId : ctx[name];
    if (typeof v !== 'string') return undefined;
    key = i === 0 ? v : key + '\u0000' + v;
  }
  return key;
}

/**
 * The context's run path, checked for shape only (the hot path's share of KS-1.5.4; the provider
 * checks ids with {@link runPathProblem} first and answers fail-closed with the reason).
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for a run path that is not an array of 1 to 64
 *   strings, or does not end with `runId`: a lookup never answers on a path it cannot read
 */
function runPathOf(ctx: KillContext): readonly string[] | undefined {
  const rp = ctx.runPath;
  if (rp === undefined) return undefined;
  if (
    !Array.isArray(rp) ||
    rp.length === 0 ||
    rp.length > MAX_RUN_DEPTH ||
    (ctx.runId !== undefined && rp[rp.length - 1] !== ctx.runId)
  ) {
    throw new ValidationError('context', [
      { path: ['runPath'], message: runPathProblem(ctx) ?? 'malformed run path' },
    ]);
  }
  return rp;
}

/** A shape in use and its map, side by side so a lookup does one map probe per shape. */
interface ShapeIndex {
  readonly shape: number;
  readonly map: Map<string, FlipRecord>;
}

/**
 * The kill state: the fold of the flip log. Mutable and indexed for the hot path: a lookup
 * costs at most one map probe per selector shape in use (at most 16), whatever the number of
 * active halts. KS-1.4.2
 *
 * @example
 * ```ts
 * const state = KillState.fold(records);
 * state.match({ tenant: 'acme', runId: 'r1' }); // the matching halt record, or undefined
 * ```
 */
export class KillState {
  #seq: number;
  #hash: string;
  /** shape bitmask -> selector key -> active halt */
  readonly #index = new Map<number, Map<string, FlipRecord>>();
  /** Shapes with at least one active halt, per level and in all. */
  #shapes: ShapeIndex[] = [];
  #shapesByLevel = new Map<Level, ShapeIndex[]>();
  #size = 0;
  /** Bumped by every change of the active halts; a cached answer of an older version is stale. */
  #version = 0;
  /**
   * The pure run-halt answer (shape `{runId}`) per frozen run path: a run scope hands the same
   * frozen array to every effect of its run, so the probes per ancestor are made once per run
   * and state version, not once per effect. Weak: a path nobody holds any more is forgotten.
   */
  readonly #pathHits = new WeakMap<
    readonly string[],
    { readonly version: number; readonly hit: FlipRecord | undefined }
  >();

  private constructor(seq: number, hash: string) {
    this.#seq = seq;
    this.#hash = hash;
  }

  /** The state before any record. */
  static empty(): KillState {
    return new KillState(0, GENESIS_HASH);
  }

  /**
   * Folds records from seq 1 in order. KS-1.4.3
   *
   * @throws {KillSwitchError} `KS_SEQ_GAP` or {@link LogCorruptError} when records do not chain
   */
  static fold(records: Iterable<FlipRecord>): KillState {
    const s = KillState.empty();
    for (const r of records) s.apply(r);
    return s;
  }

  /**
   * Builds the state a snapshot describes (validated: a snapshot may come off the wire).
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed snapshot
   */
  static fromSnapshot(input: unknown): KillState {
    const r = killSnapshotSchema.safeParse(input);
    if (!r.success) throw new ValidationError('snapshot', toIssues(r.error));
    const s = new KillState(r.data.seq, r.data.hash);
    for (const raw of r.data.halts) {
      const h = parseFlipRecord(raw);
      if (h.action !== 'halt' || h.seq > r.data.seq) {
        throw new ValidationError('snapshot', [
          {
            path: ['halts'],
            message: `record ${h.seq} is not an active halt at seq ${r.data.seq}`,
          },
        ]);
      }
      s.#put(h);
    }
    return s;
  }

  /** Seq of the last record folded (0 before any). */
  get seq(): number {
    return this.#seq;
  }

  /** Hash of the last record folded. */
  get hash(): string {
    return this.#hash;
  }

  /** Number of active halts. */
  get size(): number {
    return this.#size;
  }

  /**
   * Applies the next record. KS-1.3.1 (any matching halt wins), KS-1.3.2 (resume lifts exactly
   * the same selector).
   *
   * @throws {KillSwitchError} `KS_SEQ_GAP` when `record.seq` is not `seq + 1`
   * @throws {LogCorruptError} `KS_LOG_CORRUPT` when `record.prev` is not the current hash
   */
  apply(record: FlipRecord): StateChange {
    if (record.seq !== this.#seq + 1) {
      throw new KillSwitchError(
        ErrorCode.SEQ_GAP,
        `expected seq ${this.#seq + 1}, received ${record.seq}`,
      );
    }
    if (record.prev !== this.#hash) {
      throw new LogCorruptError(record.seq, 'prev does not match the hash of the record before');
    }
    let changed: boolean;
    if (record.action === 'halt') {
      this.#put(record);
      changed = true;
    } else {
      changed = this.#remove(record.selector);
    }
    this.#seq = record.seq;
    this.#hash = record.hash;
    return { record, changed, level: levelOf(record.selector) };
  }

  /**
   * The matching active halt with the lowest seq, or undefined when none matches. A shape that
   * names `runId` is probed once per element of the context's `runPath` (the run and each
   * ancestor), so a lookup costs one probe per shape, times the depth for run shapes.
   * KS-1.3.1, KS-1.5.2, KS-1.5.3
   *
   * @param ctx - the evaluation context's kill attributes
   * @param level - only halts of this level
   * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed `runPath` (KS-1.5.4)
   */
  match(ctx: KillContext, level?: Level): FlipRecord | undefined {
    const shapes = level === undefined ? this.#shapes : this.#shapesByLevel.get(level);
    if (shapes === undefined) return undefined;
    const path = runPathOf(ctx);
    let best: FlipRecord | undefined;
    for (let i = 0; i < shapes.length; i++) {
      const s = shapes[i]!;
      if (path !== undefined && s.shape === RUN_BIT && Object.isFrozen(path)) {
        const cached = this.#pathHits.get(path);
        let hit: FlipRecord | undefined;
        if (cached !== undefined && cached.version === this.#version) hit = cached.hit;
        else {
          for (let j = 0; j < path.length; j++) {
            const h = s.map.get(path[j]!);
            if (h !== undefined && (hit === undefined || h.seq < hit.seq)) hit = h;
          }
          this.#pathHits.set(path, { version: this.#version, hit });
        }
        if (hit !== undefined && (best === undefined || hit.seq < best.seq)) best = hit;
        continue;
      }
      if (path !== undefined && (s.shape & RUN_BIT) !== 0) {
        for (let j = 0; j < path.length; j++) {
          const key = keyOf(s.shape, ctx, path[j]);
          if (key === undefined) continue;
          const hit = s.map.get(key);
          if (hit !== undefined && (best === undefined || hit.seq < best.seq)) best = hit;
        }
        continue;
      }
      const key = keyOf(s.shape, ctx);
      if (key === undefined) continue;
      const hit = s.map.get(key);
      if (hit !== undefined && (best === undefined || hit.seq < best.seq)) best = hit;
    }
    return best;
  }

  /**
   * Every active halt that matches the context, in seq order (each ancestor's too).
   *
   * @throws {ValidationError} `KS_INVALID_INPUT` for a malformed `runPath`
   */
  matchAll(ctx: KillContext): FlipRecord[] {
    const path = runPathOf(ctx);
    const out: FlipRecord[] = [];
    for (const s of this.#shapes) {
      const runIds = path !== undefined && (s.shape & RUN_BIT) !== 0 ? path : [ctx.runId];
      for (const runId of runIds) {
        const key = keyOf(s.shape, ctx, runId);
        if (key === undefined) continue;
        const hit = s.map.get(key);
        if (hit !== undefined) out.push(hit);
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The active halt with exactly this selector. */
  get(selector: Selector): FlipRecord | undefined {
    const shape = shapeOf(selector);
    return this.#index.get(shape)?.get(keyOf(shape, selector)!);
  }

  /** Active halts in seq order. */
  activeHalts(): FlipRecord[] {
    const out: FlipRecord[] = [];
    for (const m of this.#index.values()) for (const r of m.values()) out.push(r);
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The state as it travels (snapshot event, `GET /v1/state`). */
  toSnapshot(): KillSnapshot {
    return { seq: this.#seq, hash: this.#hash, halts: this.activeHalts() };
  }

  /** An independent copy. */
  clone(): KillState {
    const c = new KillState(this.#seq, this.#hash);
    for (const r of this.activeHalts()) c.#put(r);
    return c;
  }

  #put(record: FlipRecord): void {
    this.#version++;
    const shape = shapeOf(record.selector);
    let m = this.#index.get(shape);
    if (m === undefined) {
      m = new Map();
      this.#index.set(shape, m);
    }
    const key = keyOf(shape, record.selector)!;
    if (!m.has(key)) this.#size++;
    m.set(key, record);
    if (m.size === 1) this.#reshape();
  }

  #remove(selector: Selector): boolean {
    this.#version++;
    const shape = shapeOf(selector);
    const m = this.#index.get(shape);
    if (m === undefined || !m.delete(keyOf(shape, selector)!)) return false;
    this.#size--;
    if (m.size === 0) {
      this.#index.delete(shape);
      this.#reshape();
    }
    return true;
  }

  #reshape(): void {
    this.#shapes = [...this.#index.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([shape, map]) => ({ shape, map }));
    const byLevel = new Map<Level, ShapeIndex[]>();
    for (const l of LEVELS) byLevel.set(l, []);
    for (const s of this.#shapes) {
      const sample = s.map.values().next().value as FlipRecord;
      byLevel.get(levelOf(sample.selector))!.push(s);
    }
    this.#shapesByLevel = byLevel;
  }
}
