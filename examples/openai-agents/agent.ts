import { Agent } from '@openai/agents';
import type { EffectGuard } from 'openfeature-kill-switch';
import { guardRun } from 'openfeature-kill-switch/openai-agents';
import { ScriptedModel } from './scripted-model.js';
import { sendUpdate } from './tools.js';

/** One ticket, one agent run under the kill switch: a halt ends it with `HaltedError`. */
export async function handleTicket(guard: EffectGuard, runId: string, tenant: string) {
  const agent = new Agent({
    name: 'support',
    instructions: 'Keep the customer updated.',
    model: new ScriptedModel(runId), // or a model name, e.g. 'gpt-5' (set OPENAI_API_KEY)
    tools: [sendUpdate],
  });
  const run = guardRun(guard, { runId, tenant });
  const result = await run.run(agent, `Handle ${runId}`, { maxTurns: 10 });
  return String(result.finalOutput);
}
