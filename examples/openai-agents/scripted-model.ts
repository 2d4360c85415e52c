import { Usage, type Model, type ModelResponse } from '@openai/agents';

/** A model that answers from a script (no network): three `send_update` calls, then a summary. */
export class ScriptedModel implements Model {
  #call = 0;

  constructor(readonly ticket: string) {}

  async getResponse(request: { signal?: AbortSignal }): Promise<ModelResponse> {
    request.signal?.throwIfAborted();
    const n = this.#call++;
    const usage = new Usage({ requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 });
    if (n < 3)
      return {
        usage,
        output: [
          {
            type: 'function_call',
            callId: `${this.ticket}-call-${n}`,
            name: 'send_update',
            arguments: JSON.stringify({ ticket: this.ticket }),
            status: 'completed',
          },
        ],
      };
    return {
      usage,
      output: [
        {
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: `3 updates sent for ${this.ticket}` }],
        },
      ],
    };
  }

  getStreamedResponse(): AsyncIterable<never> {
    throw new Error('the scripted model only answers run()');
  }
}
