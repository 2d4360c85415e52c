/** A tiny SSE reader for tests: parses events off a fetch body, one at a time. */
export interface SseEvent {
  readonly event: string;
  readonly id: string | undefined;
  readonly data: string;
  readonly retry: number | undefined;
}

export class SseReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buf = '';
  readonly #queue: SseEvent[] = [];
  #ended = false;
  #pending: ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> | undefined;
  /** retry: values seen so far. */
  retries: number[] = [];
  readonly #abort: AbortController;

  private constructor(body: ReadableStream<Uint8Array>, abort: AbortController) {
    this.#reader = body.getReader();
    this.#abort = abort;
  }

  static async open(
    url: string,
    headers: Record<string, string> = {},
  ): Promise<{ res: Response; reader: SseReader }> {
    const abort = new AbortController();
    const res = await fetch(url, {
      headers: { accept: 'text/event-stream', ...headers },
      signal: abort.signal,
    });
    if (!res.body) throw new Error('no body');
    return { res, reader: new SseReader(res.body, abort) };
  }

  /** The next event (rejects after `timeoutMs` or at the end of the stream). */
  async next(timeoutMs = 5000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0) {
      if (this.#ended) throw new Error('stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for an event');
      let timer: NodeJS.Timeout | undefined;
      // A read left pending by a timeout is kept for the next call: abandoning it would drop
      // the chunk it resolves with.
      const read = (this.#pending ??= this.#reader.read());
      const r = await Promise.race([
        read,
        new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), left))),
      ]).finally(() => clearTimeout(timer));
      if (r === 'timeout') continue;
      this.#pending = undefined;
      if (r.done) {
        this.#ended = true;
        continue;
      }
      this.#buf += this.#decoder.decode(r.value, { stream: true });
      this.#parse();
    }
    return this.#queue.shift()!;
  }

  /** The next event that is not a heartbeat. */
  async nextNonHeartbeat(timeoutMs = 5000): Promise<SseEvent> {
    for (;;) {
      const e = await this.next(timeoutMs);
      if (e.event !== 'heartbeat') return e;
    }
  }

  /** True once the server closed the stream (reads until the end or the timeout). */
  async ended(timeoutMs = 5000): Promise<boolean> {
    try {
      for (;;) await this.next(timeoutMs);
    } catch (err) {
      return (err as Error).message === 'stream ended' || this.#ended;
    }
  }

  close(): void {
    this.#abort.abort();
  }

  #parse(): void {
    for (;;) {
      const i = this.#buf.indexOf('\n\n');
      if (i < 0) return;
      const block = this.#buf.slice(0, i);
      this.#buf = this.#buf.slice(i + 2);
      let event = 'message';
      let id: string | undefined;
      const data: string[] = [];
      let retry: number | undefined;
      for (const line of block.split('\n')) {
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'id') id = value;
        else if (field === 'data') data.push(value);
        else if (field === 'retry') {
          retry = Number(value);
          this.retries.push(retry);
        }
      }
      if (data.length === 0) continue;
      this.#queue.push({ event, id, data: data.join('\n'), retry });
    }
  }
}
