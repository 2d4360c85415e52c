import type { Level } from './selector.js';

/** The flag every effect evaluates: halted if any active halt matches the context. KS-3.1.1 */
export const KILL_SWITCH_FLAG = 'kill-switch';

/** One flag per level, for dashboards and narrow checks. KS-3.1.2 */
export const LEVEL_FLAGS = {
  global: 'kill-switch.global',
  tenant: 'kill-switch.tenant',
  feature: 'kill-switch.feature',
  run: 'kill-switch.run',
  capability: 'kill-switch.capability',
} as const satisfies Record<Level, string>;

/** A flag key the kill switch answers: `kill-switch` or `kill-switch.<level>`. */
export type KillFlagKey = typeof KILL_SWITCH_FLAG | (typeof LEVEL_FLAGS)[Level];

/** Every flag key the kill switch answers. */
export const KILL_FLAG_KEYS: readonly KillFlagKey[] = [
  KILL_SWITCH_FLAG,
  ...Object.values(LEVEL_FLAGS),
];

const byKey = new Map<string, Level | 'any'>([
  [KILL_SWITCH_FLAG, 'any'],
  ...Object.entries(LEVEL_FLAGS).map(([l, k]) => [k, l as Level] as const),
]);

/** True for `kill-switch` and `kill-switch.<level>`. */
export function isKillFlag(key: string): key is KillFlagKey {
  return byKey.has(key);
}

/** The level a kill flag reads (`any` for `kill-switch`), or undefined for other keys. */
export function levelOfFlag(key: string): Level | 'any' | undefined {
  return byKey.get(key);
}

/** The flags whose answer can change when a halt of this level is added or lifted. */
export function flagsChangedBy(level: Level): KillFlagKey[] {
  return [KILL_SWITCH_FLAG, LEVEL_FLAGS[level]];
}
