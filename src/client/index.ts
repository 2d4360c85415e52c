export {
  ControlPlaneClient,
  ControlPlaneError,
  type ControlPlaneClientOptions,
  type FlipRequestInput,
} from './control-plane-client.js';
