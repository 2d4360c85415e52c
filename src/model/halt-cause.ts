import type { Selector } from './kill-context.js';
import type { QueueMode } from './queue-mode.js';

/** Why an effect was refused: a matching halt, or a kill state that could not be trusted. */
export const HaltCause = {
  HALTED: 'halted',
  STALE: 'stale',
  ERROR: 'error',
} as const;
export type HaltCause = (typeof HaltCause)[keyof typeof HaltCause];

/** The parts of a flip that an error or a resolution names. */
export interface FlipSummary {
  readonly seq: number;
  readonly id: string;
  readonly actor: string;
  readonly reason: string;
  readonly selector: Selector;
  readonly mode?: QueueMode;
}
