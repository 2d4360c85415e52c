import {
  Usage,
  type Model,
  type ModelRequest,
  type ModelResponse,
  type StreamEvent,
} from '@openai/agents';

/** One answer of the scripted model: function calls, a handoff, or text streamed token by token. */
export type Turn =
  | { readonly toolCalls: readonly { id: string; name: string; input: unknown }[] }
  | { readonly text: readonly string[]; readonly tokenMs?: number };

function usage() {
  return new Usage({ requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 });
}

function output(turn: Turn): ModelResponse['output'] {
  if ('toolCalls' in turn)
    return turn.toolCalls.map((c) => ({
      type: 'function_call' as const,
      callId: c.id,
      name: c.name,
      arguments: JSON.stringify(c.input),
      status: 'completed' as const,
    }));
  return [
    {
      type: 'message' as const,
      role: 'assistant' as const,
      status: 'completed' as const,
      content: [{ type: 'output_text' as const, text: turn.text.join('') }],
    },
  ];
}

/**
 * An OpenAI Agents `Model` that answers from a script instead of the network. Like the OpenAI
 * client, its stream ends silently (no error) when its signal aborts.
 */
export class ScriptedModel implements Model {
  calls = 0;
  tokens = 0;
  readonly aborts: number[] = [];

  constructor(readonly script: (call: number) => Turn) {}

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    const turn = this.script(this.calls++);
    request.signal?.throwIfAborted();
    return { usage: usage(), output: output(turn), responseId: `resp-${this.calls}` };
  }

  async *getStreamedResponse(request: ModelRequest): AsyncIterable<StreamEvent> {
    const turn = this.script(this.calls++);
    const signal = request.signal;
    yield { type: 'response_started' };
    if ('text' in turn) {
      for (const t of turn.text) {
        if (turn.tokenMs) await new Promise((r) => setTimeout(r, turn.tokenMs));
        if (signal?.aborted) {
          this.aborts.push(performance.now());
          return; // ends silently, as the real client does
        }
        this.tokens++;
        yield { type: 'output_text_delta', delta: t };
      }
    }
    yield {
      type: 'response_done',
      response: {
        id: `resp-${this.calls}`,
        usage: { requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 },
        // The stream's final output has the same items as a plain response.
        output: output(turn) as never,
      },
    };
  }
}
