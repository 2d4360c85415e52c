/**
 * `openfeature-kill-switch/mastra`: the Mastra (`@mastra/core` 1.x) adapter. `@mastra/core` is an
 * optional peer dependency; only a worker that imports this subpath loads it.
 */
export {
  MastraRun,
  guardRun,
  type MastraAgentConfig,
  type MastraCallOptions,
  type MastraModel,
  type MastraRunOptions,
} from './mastra-run.js';
