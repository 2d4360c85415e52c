/**
 * `openfeature-kill-switch/langgraph`: the LangGraph.js / `langchain` 1.x adapter. `langchain`
 * and `@langchain/core` are optional peer dependencies; only a worker that imports this subpath
 * loads them.
 */
export {
  LangGraphKillSwitch,
  killSwitch,
  type LangGraphKillSwitchOptions,
} from './langgraph-kill-switch.js';
