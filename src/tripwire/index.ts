export {
  WriteRateTripwire,
  TripwireScope,
  type WriteRateTripwireOptions,
  type TripwireVerdict,
} from './write-rate-tripwire.js';
export { TripwireGuard, type TripwireGuardOptions } from './tripwire-guard.js';
export {
  controlPlaneTripwireFlip,
  storeTripwireFlip,
  type TripwireFlip,
  type TripwireFlipRequest,
} from './tripwire-flip.js';
