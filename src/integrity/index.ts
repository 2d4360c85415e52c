export { SigningKey, PublicKeyRing, keyIdOf } from './signing-key.js';
export {
  recordStatement,
  checkpointStatement,
  parseExpectedHead,
  headMismatch,
  type Checkpoint,
  type ExpectedHead,
} from './statements.js';
