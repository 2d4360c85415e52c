export {
  RemoteFlipSource,
  type RemoteFlipSourceOptions,
  type RemoteBackoffOptions,
  type RemoteClock,
} from './remote-flip-source.js';
