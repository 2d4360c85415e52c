export {
  KillSwitchProvider,
  KillVariant,
  type KillSwitchProviderOptions,
  type KillSwitchProviderFromStoreOptions,
  type KillSwitchProviderLogger,
  type FailClosedState,
} from './kill-switch-provider.js';
