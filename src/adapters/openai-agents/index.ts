/**
 * `openfeature-kill-switch/openai-agents`: the OpenAI Agents SDK (`@openai/agents` 0.20) adapter.
 * `@openai/agents` is an optional peer dependency; only a worker that imports this subpath loads it.
 */
export {
  OpenAIAgentsRun,
  asTool,
  type AsToolOptions,
  guardRun,
  type GuardedRunOptions,
  type OpenAIAgentsRunOptions,
} from './openai-agents-run.js';
