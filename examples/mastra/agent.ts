import type { EffectGuard } from 'openfeature-kill-switch';
import { guardRun } from 'openfeature-kill-switch/mastra';
import { scriptedModel } from './scripted-model.js';
import { tools } from './tools.js';

/** One ticket, one Mastra agent run under the kill switch: a halt ends it with `HaltedError`. */
export async function handleTicket(guard: EffectGuard, runId: string, tenant: string) {
  const model = scriptedModel(runId); // or your provider's, e.g. openai('gpt-5')
  const run = guardRun(guard, { runId, tenant });
  const agent = run.agent({ id: 'support', name: 'support', instructions: 'Help.', model, tools });
  const { text } = await run.generate(agent, `Handle ${runId}`, { maxSteps: 10 });
  return text;
}
