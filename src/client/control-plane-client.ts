import { ErrorCode, InvalidOptionError, KillSwitchError, type ValidationIssue } from '../errors.js';
import type { KillSnapshot } from '../model/kill-state.js';
import type { Selector } from '../model/selector.js';
import type {
  AckAnswer,
  FlipAnswer,
  HealthAnswer,
  LogAnswer,
  WorkersAnswer,
} from '../protocol/answers.js';
import { ApiPath, LogQuery } from '../protocol/paths.js';
import { describeNetworkFailure } from '../internal/network-failure.js';
import type { ReleaseRecord, ReleasesAnswer } from '../protocol/releases.js';

/** Options of {@link ControlPlaneClient}. */
export interface ControlPlaneClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:7411`. */
  readonly url: string;
  /** Bearer token. */
  readonly token?: string;
  /** Per-request timeout, added to a flip's `wait`. @default 10000 ms */
  readonly timeoutMs?: number;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** The control plane answered with an error body; `code` is the server's code. */
export class ControlPlaneError extends KillSwitchError {
  readonly status: number;
  readonly issues: readonly ValidationIssue[] | undefined;

  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    issues?: readonly ValidationIssue[],
  ) {
    super(code, message);
    this.name = 'ControlPlaneError';
    this.status = status;
    this.issues = issues;
  }
}

/**
 * A refusal without a killswitch error body: whatever answered is not a control plane (a wrong
 * port or path, another service, a proxy's error page), and its status code means nothing here.
 */
function notAControlPlane(url: string, status: number): ControlPlaneError {
  return new ControlPlaneError(
    status,
    ErrorCode.NOT_A_CONTROL_PLANE,
    `${url} is not a killswitch server (it answered HTTP ${status} without a killswitch error body)`,
  );
}

/** What a flip request names (the actor is the token's name). */
export interface FlipRequestInput {
  readonly action: 'halt' | 'resume';
  readonly selector: Selector;
  readonly reason: string;
  readonly mode?: 'discard' | 'hold' | 'drain';
  readonly id?: string;
  readonly release?: string;
  readonly source?: string;
  /** Wait up to this many ms for the fleet to stop (at most 30000, `MAX_WAIT_MS`). */
  readonly wait?: number;
}

/**
 * A small typed client of the control plane's HTTP API (used by the CLI and tests).
 *
 * @example
 * ```ts
 * const cp = new ControlPlaneClient({ url: 'http://127.0.0.1:7411', token });
 * const { flip, fleet } = await cp.flip({ action: 'halt', selector: { tenant: 'acme' }, reason: 'incident 42', wait: 5000 });
 * ```
 */
export class ControlPlaneClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` for a bad URL or timeout */
  constructor(options: ControlPlaneClientOptions) {
    let u: URL;
    try {
      u = new URL(options.url);
    } catch {
      throw new InvalidOptionError('url', 'an http(s) URL', options.url);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new InvalidOptionError('url', 'an http(s) URL', options.url);
    this.url = u.href.replace(/\/+$/, '');
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    if (!Number.isFinite(this.#timeoutMs) || this.#timeoutMs <= 0) {
      throw new InvalidOptionError('timeoutMs', 'a positive number of ms', options.timeoutMs);
    }
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /** `POST /v1/flips` */
  flip(input: FlipRequestInput): Promise<FlipAnswer> {
    return this.#call('POST', ApiPath.FLIPS, input, (input.wait ?? 0) + this.#timeoutMs);
  }

  /** `GET /v1/state` */
  state(): Promise<KillSnapshot> {
    return this.#call('GET', ApiPath.STATE);
  }

  /** `GET /v1/flips?after=&limit=` */
  log(options: { readonly after?: number; readonly limit?: number } = {}): Promise<LogAnswer> {
    const q = new URLSearchParams();
    if (options.after !== undefined) q.set(LogQuery.AFTER, String(options.after));
    if (options.limit !== undefined) q.set(LogQuery.LIMIT, String(options.limit));
    const qs = q.toString();
    return this.#call('GET', `${ApiPath.FLIPS}${qs ? `?${qs}` : ''}`);
  }

  /** `GET /v1/workers` */
  workers(): Promise<WorkersAnswer> {
    return this.#call('GET', ApiPath.WORKERS);
  }

  /** `POST /v1/acks` */
  ack(ack: {
    readonly workerId: string;
    readonly release?: string;
    readonly seq: number;
  }): Promise<AckAnswer> {
    return this.#call('POST', ApiPath.ACKS, ack);
  }

  /** `POST /v1/releases`: marks a release green or red (admin). KS-10.5.1 */
  markRelease(input: {
    readonly release: string;
    readonly status: 'green' | 'red';
    readonly reason?: string;
  }): Promise<{ release: ReleaseRecord }> {
    return this.#call('POST', ApiPath.RELEASES, input);
  }

  /** `GET /v1/releases`: each release's latest verdict and the connected workers. KS-10.5.1 */
  releases(): Promise<ReleasesAnswer> {
    return this.#call('GET', ApiPath.RELEASES);
  }

  /** `GET /healthz` */
  health(): Promise<HealthAnswer> {
    return this.#call('GET', ApiPath.HEALTH);
  }

  async #call<T>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.#timeoutMs,
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token !== undefined) headers['authorization'] = `Bearer ${this.#token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await this.#fetch(this.url + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      // Name the cause (refused, DNS, TLS, timeout), not fetch's bare "fetch failed".
      throw new KillSwitchError(
        ErrorCode.UNREACHABLE,
        `cannot reach the control plane at ${this.url}: ${describeNetworkFailure(err, timeoutMs).text}`,
        {
          cause: err,
        },
      );
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok || (res.status === 503 && path === ApiPath.HEALTH)) {
      const e = (
        json as
          { error?: { code?: string; message?: string; issues?: ValidationIssue[] } } | undefined
      )?.error;
      if ((Object.values(ErrorCode) as string[]).includes(e?.code ?? '')) {
        throw new ControlPlaneError(
          res.status,
          e!.code as ErrorCode,
          e?.message ?? `HTTP ${res.status}`,
          e?.issues,
        );
      }
      // An unhealthy control plane answers /healthz 503 with its health body.
      if (
        path === ApiPath.HEALTH &&
        typeof (json as { ok?: unknown } | undefined)?.ok === 'boolean'
      ) {
        throw new ControlPlaneError(res.status, ErrorCode.INTERNAL, `HTTP ${res.status}`);
      }
      throw notAControlPlane(this.url, res.status);
    }
    if (json === undefined) throw notAControlPlane(this.url, res.status);
    return json as T;
  }
}
