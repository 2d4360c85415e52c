import { EffectStatus, effectKey, type SideEffectLedger } from '../../ledger/side-effect-ledger.js';
import type { DiscardedRecord } from '../../queue/queue-journal.js';

/**
 * Worker variants. `normal` is production-shaped; every other one is a negative control with a
 * planted bug the drill must catch (test-only). KS-9.4
 */
export const WorkerVariant = {
  NORMAL: 'normal',
  /** Reads the kill state once at boot and caches it. */
  BOOT_CACHE: 'boot-cache',
  /** Its flag source has been unreachable all along. */
  UNREACHABLE: 'unreachable',
  /** A tool that ignores its abort signal and lands late. */
  IGNORE_ABORT: 'ignore-abort',
  /** A discard path that leaves orphan ledger rows. */
  ORPHAN_DISCARD: 'orphan-discard',
  /** Drops a run-tree child's lineage when it spawns it (the child's work leaves without its ancestry). */
  DROPS_LINEAGE: 'drops-lineage',
} as const;
export type WorkerVariant = (typeof WorkerVariant)[keyof typeof WorkerVariant];
/** Every variant name. */
export const WORKER_VARIANTS: readonly WorkerVariant[] = Object.values(WorkerVariant);

/** What a queued drill task carries. */
export interface TaskPayload {
  readonly runId: string;
  readonly step: string;
  readonly capability: string;
}

/**
 * How a worker of one variant differs from a production worker. The worker reads these traits
 * and never the variant's name, so a new negative control is one more row of
 * {@link VARIANT_TRAITS} (plus the trait it needs, if none fits). `normal` is {@link PRODUCTION}.
 */
export interface VariantTraits {
  /** The flag source reads these URLs instead of the control plane's. @default the control plane's */
  readonly flagUrls?: readonly string[];
  /**
   * Evaluates the kill state once per run context at boot and never again: effects and timers
   * bypass the guard and the scheduler (plain timers), and there is no queue.
   */
  readonly readsOnceAtBoot: boolean;
  /**
   * The tool neither checks nor passes its abort signal, and works at least this long (ms). So
   * that a halt is sure to catch one mid-flight (whatever the timing of the flip), the worker also
   * holds one such call open per run context and capability from the start until a halt aborts it,
   * and lands it anyway. @default undefined (the tool honours its signal)
   */
  readonly toolIgnoresAbortMs?: number;
  /**
   * When it spawns a run-tree child, sends the child's work with a lineage naming the child alone
   * (no ancestors), as a worker that forgets to pass the lineage on would. @default false
   */
  readonly dropsLineage?: boolean;
  /** Called after each durable batch of queue-journal records with the discards in it. */
  readonly onDiscard?: (
    discards: readonly DiscardedRecord[],
    ledger: SideEffectLedger,
  ) => Promise<void>;
}

/** The production worker: none of the planted bugs. */
export const PRODUCTION: VariantTraits = { readsOnceAtBoot: false };

/** One row per variant. KS-9.4 */
export const VARIANT_TRAITS: Readonly<Record<WorkerVariant, VariantTraits>> = {
  [WorkerVariant.NORMAL]: PRODUCTION,
  // KS-9.4.1 planted bug: evaluate once per run context at boot and never again.
  [WorkerVariant.BOOT_CACHE]: { ...PRODUCTION, readsOnceAtBoot: true },
  // KS-9.4.2 the flag source points at a port nobody listens on, from the start.
  [WorkerVariant.UNREACHABLE]: { ...PRODUCTION, flagUrls: ['http://127.0.0.1:1'] },
  // KS-9.4.3 a tool that ignores its abort signal and lands after the halt.
  [WorkerVariant.IGNORE_ABORT]: { ...PRODUCTION, toolIgnoresAbortMs: 400 },
  // KS-9.4.4 planted bug: the discard path writes an intent for each task it throws away and
  // never closes it, leaving orphan rows that claim an effect was on its way.
  [WorkerVariant.ORPHAN_DISCARD]: { ...PRODUCTION, onDiscard: writeOrphanIntents },
  // KS-9.4.5 planted bug: a spawned child's work leaves with a lineage that lost its ancestors, so
  // a halt on the root no longer reaches that child or anything it spawns.
  [WorkerVariant.DROPS_LINEAGE]: { ...PRODUCTION, dropsLineage: true },
};

async function writeOrphanIntents(
  discards: readonly DiscardedRecord[],
  ledger: SideEffectLedger,
): Promise<void> {
  for (const r of discards) {
    const p = r.payload as TaskPayload;
    await ledger
      .append({
        key: effectKey(p.runId, p.step),
        status: EffectStatus.INTENT,
        at: new Date().toISOString(),
        runId: p.runId,
        step: p.step,
        capability: p.capability,
        context: r.context,
        ...(r.haltSeq !== undefined ? { flipSeq: r.haltSeq } : {}),
      })
      .catch(() => undefined);
  }
}
