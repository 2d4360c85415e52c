/**
 * The caller's signal interrupted a drill (Ctrl-C on `killswitch drill`): every process it started
 * was stopped and its data removed (kept with `keepData`) before this was thrown.
 */
export class DrillInterruptedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DrillInterruptedError';
  }
}
