/**
 * `openfeature-kill-switch/testing`: what a test of code built on the kill switch needs, apart
 * from the worker's API. A clock that moves only when told to (its timers fire in due order as it
 * advances, so a lease, a retry or a stale deadline is tested without sleeping), and the
 * conformance suites every flip-log store and side-effect ledger runs: a new backend calls one with
 * a harness from its own test file. The suites use Vitest (and fast-check for the differential
 * test), optional peers of this subpath only.
 */
export { ManualClock, type ManualClockOptions } from '../internal/clock.js';
export {
  describeFlipLogStoreConformance,
  type FlipLogStoreHarness,
  type HarnessCreateOptions,
} from './flip-log-store-conformance.js';
export { describeLedgerConformance, type LedgerHarness } from './side-effect-ledger-conformance.js';
