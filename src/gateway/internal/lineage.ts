import type { Lineage } from '../../lineage/lineage.js';

/** `over` wins field by field; a run path given in `over` replaces the other's. */
export function mergeLineage(base: Lineage, over: Lineage | undefined): Lineage {
  if (over === undefined) return base;
  const tenant = over.tenant ?? base.tenant;
  const feature = over.feature ?? base.feature;
  return {
    ...(tenant !== undefined ? { tenant } : {}),
    ...(feature !== undefined ? { feature } : {}),
    runPath: over.runPath.length > 0 ? over.runPath : base.runPath,
  };
}
