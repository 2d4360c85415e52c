export {
  KillSwitchHook,
  type KillSwitchHookOptions,
  type KillSwitchHookLogger,
} from './kill-switch-hook.js';
export { evaluateKillFlag } from './evaluate-kill-flag.js';
export { killSwitchClient } from './kill-switch-client.js';
