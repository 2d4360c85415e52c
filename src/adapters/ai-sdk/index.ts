/**
 * `openfeature-kill-switch/ai-sdk`: the Vercel AI SDK (`ai` 7) adapter. `ai` is an optional peer
 * dependency; only a worker that imports this subpath loads it.
 */
export { AiSdkRun, guardRun, type AiSdkRunOptions, type LanguageModelV4 } from './ai-sdk-run.js';
