export {
  RemoteFlipSource,
  type RemoteFlipSourceOptions,
  type RemoteBackoffOptions,
} from './remote-flip-source.js';
export { systemClock, type Clock } from '../../src/internal/clock.js';
