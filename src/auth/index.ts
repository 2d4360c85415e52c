export {
  Role,
  authorize,
  withinScope,
  workerMatches,
  type Principal,
  type Action,
} from './principal.js';
export { WorkerClaims, type WorkerClaimsOptions } from './worker-claims.js';
export {
  TokenAuthenticator,
  tokenSpecSchema,
  tokenFileSchema,
  parseTokenSpecs,
  hashToken,
  type TokenSpec,
  type TokenAuthenticatorOptions,
} from './token-authenticator.js';
export {
  loadTokens,
  readGeneratedToken,
  GENERATED_TOKEN_FILE,
  TOKENS_FILE,
  type LoadTokensOptions,
  type LoadedTokens,
} from './load-tokens.js';
export { isLoopbackHost } from './is-loopback-host.js';
