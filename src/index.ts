/**
 * openfeature-kill-switch: the public API. Everything a worker needs to evaluate kill flags and
 * guard effects; the server, the CLI and each backend sit behind their own subpath exports.
 */
export * from './errors.js';
export * from './model/index.js';
export * from './store/index.js';
export * from './source/index.js';
export * from './provider/index.js';
export * from './hooks/index.js';
export * from './guard/index.js';
export * from './ledger/index.js';
export * from './schedule/index.js';
export * from './queue/index.js';
export * from './tripwire/index.js';
export * from './telemetry/index.js';
export * from './run/index.js';
export * from './report/index.js';
export { systemClock, type Clock } from './internal/clock.js';
export * from './lineage/index.js';
export * from './scope/index.js';
