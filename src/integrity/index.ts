export { SigningKey, PublicKeyRing, keyIdOf } from './signing-key.js';
export {
  recordStatement,
  checkpointStatement,
  snapshotStatement,
  parseExpectedHead,
  headMismatch,
  type Checkpoint,
  type ExpectedHead,
} from './statements.js';
export {
  checkRecordSignatures,
  checkRecordSignature,
  signRecord,
  makeCheckpoint,
  checkpointVerifies,
  attachSignature,
  signatureOf,
  type SignedHead,
} from './record-signatures.js';
export {
  releaseStatement,
  releaseHash,
  chainRelease,
  releaseHead,
  releaseChainBreak,
} from './release-chain.js';
