import type { MastraModel } from 'openfeature-kill-switch/mastra';

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 1, text: 1, reasoning: 0 },
};

/** A model that answers from a script (no network): three `send_update` calls, then a summary. */
export function scriptedModel(ticket: string): MastraModel {
  let call = 0;
  const answer = () => {
    const n = call++;
    return n < 3
      ? {
          content: [
            {
              type: 'tool-call' as const,
              toolCallId: `${ticket}-call-${n}`,
              toolName: 'send_update',
              input: JSON.stringify({ ticket }),
            },
          ],
          finishReason: { unified: 'tool-calls' as const, raw: 'tool_calls' },
          usage,
          warnings: [],
        }
      : {
          content: [{ type: 'text' as const, text: `3 updates sent for ${ticket}` }],
          finishReason: { unified: 'stop' as const, raw: 'stop' },
          usage,
          warnings: [],
        };
  };
  return {
    specificationVersion: 'v4',
    provider: 'scripted',
    modelId: 'scripted-1',
    supportedUrls: {},
    doGenerate: async (options: { abortSignal?: AbortSignal }) => {
      options.abortSignal?.throwIfAborted();
      return answer();
    },
    doStream: async () => {
      throw new Error('the scripted model only answers generate');
    },
  };
}
