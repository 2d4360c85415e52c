import type {
  LanguageModelV4,
  LanguageModelV4CallOptions,
  LanguageModelV4Content,
  LanguageModelV4GenerateResult,
  LanguageModelV4StreamPart,
  LanguageModelV4StreamResult,
  LanguageModelV4Usage,
} from '@ai-sdk/provider';

/** One answer of the scripted model: tool calls, or text streamed a token at a time. */
export type Turn =
  | { readonly toolCalls: readonly { id: string; name: string; input: unknown }[] }
  | { readonly text: readonly string[]; readonly tokenMs?: number };

const USAGE: LanguageModelV4Usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 1, text: 1, reasoning: 0 },
};

/**
 * A language model (provider spec v4) that answers from a script instead of the network. Like
 * the OpenAI and Anthropic clients, its stream ends silently (no error) when its signal aborts.
 */
export class ScriptedModel implements LanguageModelV4 {
  readonly specificationVersion = 'v4';
  readonly provider = 'scripted';
  readonly modelId = 'scripted-1';
  readonly supportedUrls = {};
  /** Model calls started (generate and stream). */
  calls = 0;
  /** Streams that saw their signal abort, and when (performance.now). */
  readonly aborts: number[] = [];
  /** Text tokens delivered by streams. */
  tokens = 0;

  constructor(readonly script: (call: number) => Turn) {}

  async doGenerate(options: LanguageModelV4CallOptions): Promise<LanguageModelV4GenerateResult> {
    const turn = this.script(this.calls++);
    options.abortSignal?.throwIfAborted();
    if ('toolCalls' in turn) {
      return {
        content: turn.toolCalls.map((c): LanguageModelV4Content => ({
          type: 'tool-call',
          toolCallId: c.id,
          toolName: c.name,
          input: JSON.stringify(c.input),
        })),
        finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
        usage: USAGE,
        warnings: [],
      };
    }
    return {
      content: [{ type: 'text', text: turn.text.join('') }],
      finishReason: { unified: 'stop', raw: 'stop' },
      usage: USAGE,
      warnings: [],
    };
  }

  async doStream(options: LanguageModelV4CallOptions): Promise<LanguageModelV4StreamResult> {
    const turn = this.script(this.calls++);
    const signal = options.abortSignal;
    const parts: LanguageModelV4StreamPart[] = [{ type: 'stream-start', warnings: [] }];
    if ('toolCalls' in turn) {
      for (const c of turn.toolCalls)
        parts.push({
          type: 'tool-call',
          toolCallId: c.id,
          toolName: c.name,
          input: JSON.stringify(c.input),
        });
      parts.push({
        type: 'finish',
        finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
        usage: USAGE,
      });
    } else {
      parts.push({ type: 'text-start', id: 't' });
      for (const t of turn.text) parts.push({ type: 'text-delta', id: 't', delta: t });
      parts.push({ type: 'text-end', id: 't' });
      parts.push({ type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage: USAGE });
    }
    const tokenMs = 'text' in turn ? (turn.tokenMs ?? 0) : 0;
    let i = 0;
    let seen = false;
    const stream = new ReadableStream<LanguageModelV4StreamPart>({
      pull: async (controller) => {
        if (tokenMs > 0 && i > 1) await new Promise((r) => setTimeout(r, tokenMs));
        if (signal?.aborted) {
          if (!seen) this.aborts.push(performance.now());
          seen = true;
          controller.close(); // ends silently, as the real clients do
          return;
        }
        const p = parts[i++];
        if (p === undefined) return controller.close();
        if (p.type === 'text-delta') this.tokens++;
        controller.enqueue(p);
      },
    });
    return { stream };
  }
}
