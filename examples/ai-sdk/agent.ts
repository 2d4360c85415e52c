import { isStepCount } from 'ai';
import type { EffectGuard } from 'openfeature-kill-switch';
import { guardRun } from 'openfeature-kill-switch/ai-sdk';
import { scriptedModel } from './scripted-model.js';
import { tools } from './tools.js';

/** One ticket, one agent run under the kill switch: a halt ends it with `HaltedError`. */
export async function handleTicket(guard: EffectGuard, runId: string, tenant: string) {
  const model = scriptedModel(runId); // or your provider's, e.g. openai('gpt-5')
  const run = guardRun(guard, { runId, tenant });
  const { text } = await run.generateText({
    model,
    tools,
    prompt: `Handle ${runId}`,
    stopWhen: isStepCount(10),
  });
  return text;
}
