export {
  ControlPlaneClient,
  ControlPlaneError,
  type ControlPlaneClientOptions,
  type FlipRequestInput,
} from './control-plane-client.js';
export { tlsFetch, type TlsFetchOptions } from './tls-fetch.js';
