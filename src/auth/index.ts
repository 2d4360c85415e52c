export {
  Role,
  authorize,
  withinScope,
  compatibleWithScope,
  mayRead,
  readsAll,
  workerMatches,
  type Principal,
  type Action,
  type HaltOwner,
} from './principal.js';
export { WorkerClaims, type WorkerClaimsOptions } from './worker-claims.js';
export {
  TokenAuthenticator,
  tokenSpecSchema,
  tokenFileSchema,
  parseTokenSpecs,
  type TokenSpec,
  type TokenAuthenticatorOptions,
} from './token-authenticator.js';
export { createToken, hashToken, sha256Token, tokenId, SCRYPT_DEFAULTS } from './token-hash.js';
export {
  loadTokens,
  readGeneratedToken,
  GENERATED_TOKEN_FILE,
  TOKENS_FILE,
  type LoadTokensOptions,
  type LoadedTokens,
} from './load-tokens.js';
export {
  watchTokenFile,
  type TokenFileWatcher,
  type WatchTokenFileOptions,
} from './watch-token-file.js';
export { isLoopbackHost } from './is-loopback-host.js';
