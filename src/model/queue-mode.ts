/**
 * What a halt does to queued work (DESIGN section 1): `discard` journals and removes matching
 * queued tasks (the safety default), `hold` keeps them paused, `drain` stops intake and lets the
 * queued ones finish.
 */
export const QueueMode = { DISCARD: 'discard', HOLD: 'hold', DRAIN: 'drain' } as const;
export type QueueMode = (typeof QueueMode)[keyof typeof QueueMode];
/** The queue mode of a halt that names none: discard, the safety default. */
export const DEFAULT_QUEUE_MODE: QueueMode = 'discard';
