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
} as const;
export type WorkerVariant = (typeof WorkerVariant)[keyof typeof WorkerVariant];
/** Every variant name. */
export const WORKER_VARIANTS: readonly WorkerVariant[] = Object.values(WorkerVariant);
