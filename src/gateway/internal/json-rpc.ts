/**
 * The few JSON-RPC 2.0 and MCP wire pieces the gateway forwards by hand (no SDK in the hot path:
 * bench:gateway measured the SDK's web-stream transports, request objects and schema parsing at
 * four endpoints per call as most of the MCP path's added latency).
 */

/** A JSON-RPC request id. */
export type JsonRpcId = string | number;

/** The `error` member of a JSON-RPC answer. */
export interface JsonRpcError {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

/** Any JSON-RPC message: a request (method and id), a notification (method), or a response. */
export interface JsonRpcMessage {
  readonly jsonrpc: '2.0';
  readonly id?: JsonRpcId | null;
  readonly method?: string;
  readonly params?: Record<string, unknown>;
  readonly result?: unknown;
  readonly error?: JsonRpcError;
}

/** A response as it came: `result`, or `error`. */
export type JsonRpcResponse =
  | { readonly result: unknown; readonly error?: undefined }
  | { readonly error: JsonRpcError; readonly result?: undefined };

/** JSON-RPC and MCP error codes the gateway answers with. */
export const RpcCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** The SDKs' code for "connection closed" / bad session. */
  CONNECTION_CLOSED: -32000,
  /** The SDKs' code for a request that timed out. */
  REQUEST_TIMEOUT: -32001,
} as const;

/** Protocol versions the gateway negotiates with `initialize` (newest last). */
export const HANDSHAKE_VERSIONS = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25'] as const;
/** The newest of {@link HANDSHAKE_VERSIONS}: offered upstream, answered when a client asks another. */
export const LATEST_HANDSHAKE_VERSION = HANDSHAKE_VERSIONS[HANDSHAKE_VERSIONS.length - 1]!;

/** A request: a method and an id (an answer is due). */
export function isRequest(
  m: JsonRpcMessage,
): m is JsonRpcMessage & { id: JsonRpcId; method: string } {
  return typeof m.method === 'string' && (typeof m.id === 'string' || typeof m.id === 'number');
}

/** A notification: a method, no id (no answer). */
export function isNotification(m: JsonRpcMessage): m is JsonRpcMessage & { method: string } {
  return typeof m.method === 'string' && m.id === undefined;
}

/** A well-formed JSON-RPC message object, else undefined. */
export function asMessage(v: unknown): JsonRpcMessage | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const m = v as Record<string, unknown>;
  if (m['jsonrpc'] !== '2.0') return undefined;
  if (m['params'] !== undefined && (typeof m['params'] !== 'object' || m['params'] === null))
    return undefined;
  return m as unknown as JsonRpcMessage;
}

/**
 * Server-sent events, parsed as they arrive: `push` text chunks, get the `data` of each complete
 * event (multi-line data joined with `\n`; events without data, such as priming events, skipped).
 */
export class SseParser {
  #buf = '';

  push(chunk: string): string[] {
    this.#buf += chunk;
    const out: string[] = [];
    for (;;) {
      const m = /\r\n\r\n|\n\n|\r\r/.exec(this.#buf);
      if (m === null) break;
      const block = this.#buf.slice(0, m.index);
      this.#buf = this.#buf.slice(m.index + m[0].length);
      const data: string[] = [];
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
      }
      if (data.length > 0) out.push(data.join('\n'));
    }
    return out;
  }
}

/** One server-sent event carrying a JSON-RPC message (the Streamable HTTP framing). */
export function sseEvent(msg: unknown): string {
  return `event: message\ndata: ${JSON.stringify(msg)}\n\n`;
}
