import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ErrorCode, KillSwitchError, ValidationError } from '../errors.js';
import { toIssues } from '../internal/zod-issues.js';
import { idText, safeText } from '../protocol/text.js';

const httpUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL')
  .transform((s) => s.replace(/\/+$/, ''));

const positiveMs = z.number().int('must be an integer (ms)').positive('must be positive (ms)');

/** An upstream name becomes a tool-name prefix and part of a capability: keep it plain. */
const upstreamName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 letters, digits, _ or - (no dots)');

const stdioUpstream = z.strictObject({
  /** The program to start (an MCP server speaking stdio). */
  command: z.string().min(1, 'must not be empty'),
  args: z.array(z.string()).default([]),
  /** Extra environment for the server process (added to PATH and HOME only, as the SDK does). */
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().min(1).optional(),
});

const httpUpstream = z.strictObject({
  /** A Streamable HTTP MCP endpoint. */
  url: httpUrl,
  /** Headers sent upstream on every request (an upstream's own credentials). */
  headers: z.record(z.string(), z.string()).optional(),
});

/** Capability template: `{upstream}` and `{tool}` are replaced. */
const capabilityTemplate = z
  .string()
  .min(1)
  .refine((s) => !/\s/.test(s), 'must not contain white space');

/** zod schema of the gateway's configuration file (`killswitch gateway --config gateway.json`). KS-15.1.2 */
export const gatewayConfigSchema = z
  .strictObject({
    /** The gateway's worker id: acknowledgements and stop-complete count it under this id. */
    workerId: idText(128),
    /** The release the gateway runs (sent to the control plane like a worker's). */
    release: safeText(200).optional(),
    controlPlane: z
      .strictObject({
        urls: z.array(httpUrl).min(1, 'must name at least one control plane URL'),
        /** A worker token, inline (prefer tokenEnv or tokenFile). */
        token: z.string().min(1).optional(),
        /** Name of an environment variable holding the worker token. */
        tokenEnv: z.string().min(1).optional(),
        /** A file holding the worker token (first line). */
        tokenFile: z.string().min(1).optional(),
        /**
         * KS-17.7.9 the control plane's public signing key(s): each entry a PEM text or the path
         * of a file holding PEM public keys (`killswitch key create` prints one). With keys the
         * gateway applies only snapshots and records signed by the key holder; anything else
         * fails it closed. @default signatures are not checked
         */
        publicKeys: z.array(z.string().min(1, 'must not be empty')).min(1).optional(),
        /** Lease: past this without renewal the gateway refuses every call and cuts those in flight. */
        staleAfterMs: positiveMs.default(3000),
        heartbeatMs: positiveMs.default(1000),
      })
      .superRefine((v, ctx) => {
        const given = [v.token, v.tokenEnv, v.tokenFile].filter((t) => t !== undefined).length;
        if (given > 1)
          ctx.addIssue({
            code: 'custom',
            path: ['token'],
            message: 'give at most one of token, tokenEnv, tokenFile',
          });
        if (v.heartbeatMs >= v.staleAfterMs)
          ctx.addIssue({
            code: 'custom',
            path: ['heartbeatMs'],
            message: `must be less than staleAfterMs (${v.staleAfterMs})`,
          });
      }),
    listen: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8787),
        /** Bind a non-loopback host (the MCP endpoint then requires `mcp.auth`; LLM API keys are checked by the upstream). */
        allowRemote: z.boolean().default(false),
      })
      .default({ host: '127.0.0.1', port: 8787, allowRemote: false }),
    /** Where the gateway records every call it forwards. @default memory */
    ledger: z
      .discriminatedUnion('kind', [
        z.strictObject({ kind: z.literal('memory') }),
        z.strictObject({
          kind: z.literal('file'),
          path: z.string().min(1),
          fsync: z.boolean().default(true),
        }),
      ])
      .default({ kind: 'memory' }),
    /** Context every call gets unless its headers or `_meta` say otherwise. */
    defaults: z
      .strictObject({ tenant: idText(256).optional(), feature: idText(256).optional() })
      .default({}),
    llm: z
      .strictObject({
        /** OpenAI-compatible upstream base (without `/v1`), e.g. `https://api.openai.com`. */
        openai: httpUrl.optional(),
        /** Anthropic upstream base (without `/v1`), e.g. `https://api.anthropic.com`. */
        anthropic: httpUrl.optional(),
        /** Capability per endpoint. @default `llm.chat.completions`, `llm.responses`, `llm.embeddings`, `llm.messages` */
        capabilities: z
          .strictObject({
            chatCompletions: idText(256).default('llm.chat.completions'),
            responses: idText(256).default('llm.responses'),
            embeddings: idText(256).default('llm.embeddings'),
            messages: idText(256).default('llm.messages'),
          })
          .default({
            chatCompletions: 'llm.chat.completions',
            responses: 'llm.responses',
            embeddings: 'llm.embeddings',
            messages: 'llm.messages',
          }),
        /** Context per API key (the key's SHA-256 in hex, never the key): for clients that cannot send headers. */
        keyContext: z
          .record(
            z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest of the API key'),
            z.strictObject({ tenant: idText(256).optional(), feature: idText(256).optional() }),
          )
          .optional(),
        /** Largest request body accepted. @default 10 MiB */
        maxBodyBytes: z
          .number()
          .int()
          .positive()
          .default(10 * 1024 * 1024),
      })
      .optional(),
    mcp: z
      .strictObject({
        /** The Streamable HTTP endpoint's path. @default /mcp */
        path: z
          .string()
          .regex(/^\/[A-Za-z0-9/_-]*$/, 'must be a path such as /mcp')
          .default('/mcp'),
        /** Between an upstream's name and its tool's: `files__read`. @default `__` */
        separator: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{1,4}$/)
          .default('__'),
        /** The capability of a tool call. @default `{upstream}.{tool}` */
        capability: capabilityTemplate.default('{upstream}.{tool}'),
        /** Longest an upstream tool call may run (progress resets it). @default 600000 (10 min) */
        callTimeoutMs: positiveMs.default(600_000),
        /** Most Streamable HTTP sessions open at once; a new one past it gets 503. @default 1000 */
        maxSessions: z.number().int().positive().max(1_000_000).default(1000),
        /** A session with no request and no call in flight this long is closed. @default 1800000 (30 min) */
        sessionIdleMs: positiveMs.default(1_800_000),
        /**
         * Bearer tokens an MCP client must present (`Authorization: Bearer <token>`), each given by
         * the SHA-256 hex digest of the token (the file holds no secret). Required when
         * `listen.allowRemote` exposes the endpoint. A session is bound to the token that opened it.
         */
        auth: z
          .strictObject({
            tokens: z
              .array(
                z.strictObject({
                  name: idText(64),
                  sha256: z
                    .string()
                    .regex(/^[0-9a-f]{64}$/, 'must be the SHA-256 hex digest of the token'),
                }),
              )
              .min(1, 'must name at least one token'),
          })
          .optional(),
        upstreams: z
          .record(upstreamName, z.union([stdioUpstream, httpUpstream]))
          .refine((r) => Object.keys(r).length > 0, 'must name at least one upstream'),
      })
      .optional(),
  })
  .superRefine((v, ctx) => {
    if (v.mcp !== undefined && v.listen.allowRemote && v.mcp.auth === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['mcp', 'auth'],
        message: 'required when listen.allowRemote exposes the MCP endpoint',
      });
    if (v.llm === undefined && v.mcp === undefined)
      ctx.addIssue({ code: 'custom', path: [], message: 'configure llm, mcp or both' });
    if (v.llm !== undefined && v.llm.openai === undefined && v.llm.anthropic === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['llm'],
        message: 'name an openai or anthropic upstream',
      });
  });

/** The gateway's configuration, defaults filled in. */
export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
/** The configuration as written (defaults optional). */
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;
/** One configured MCP upstream. */
export type McpUpstreamConfig = GatewayConfig extends { mcp?: infer M }
  ? M extends { upstreams: Record<string, infer U> }
    ? U
    : never
  : never;

/**
 * Validates a gateway configuration. KS-15.1.2
 *
 * @param input - parsed JSON
 * @returns the configuration with defaults
 * @throws {ValidationError} `KS_INVALID_INPUT` naming every offending field (`controlPlane.urls.0: must be an http(s) URL`)
 */
export function parseGatewayConfig(input: unknown): GatewayConfig {
  const r = gatewayConfigSchema.safeParse(input);
  if (!r.success) throw new ValidationError('gateway config', toIssues(r.error));
  return r.data;
}

/**
 * Reads and validates a configuration file.
 *
 * @throws {ValidationError} `KS_INVALID_INPUT` for bad JSON or bad fields
 * @throws {KillSwitchError} `KS_INVALID_OPTION` when the file cannot be read
 */
export function loadGatewayConfig(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KillSwitchError(
      ErrorCode.INVALID_OPTION,
      `cannot read gateway config ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ValidationError('gateway config', [
      { path: [], message: `${path} is not JSON: ${(err as Error).message}` },
    ]);
  }
  return parseGatewayConfig(raw);
}

/**
 * The worker token the configuration names (inline, from the environment, or from a file).
 *
 * @throws {KillSwitchError} `KS_INVALID_OPTION` when the variable is unset or the file unreadable
 */
export function resolveControlPlaneToken(
  cp: GatewayConfig['controlPlane'],
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (cp.token !== undefined) return cp.token;
  if (cp.tokenEnv !== undefined) {
    const t = env[cp.tokenEnv];
    if (t === undefined || t === '')
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `gateway config controlPlane.tokenEnv: environment variable ${cp.tokenEnv} is not set`,
      );
    return t;
  }
  if (cp.tokenFile !== undefined) {
    let t: string;
    try {
      t = readFileSync(cp.tokenFile, 'utf8').split(/\r?\n/)[0]!.trim();
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `gateway config controlPlane.tokenFile: cannot read ${cp.tokenFile}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (t === '')
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `gateway config controlPlane.tokenFile: ${cp.tokenFile} is empty`,
      );
    return t;
  }
  return undefined;
}

/**
 * The control plane's public keys the configuration names (KS-17.7.9): PEM texts as given, files
 * read. The gateway checks them when it builds its source (a text without a PEM key fails there).
 *
 * @returns the PEM texts, or undefined when none are configured
 * @throws {KillSwitchError} `KS_INVALID_OPTION` when a key file cannot be read
 */
export function resolveControlPlanePublicKeys(
  cp: GatewayConfig['controlPlane'],
): string[] | undefined {
  if (cp.publicKeys === undefined) return undefined;
  return cp.publicKeys.map((entry, i) => {
    if (entry.includes('-----BEGIN')) return entry;
    try {
      return readFileSync(entry, 'utf8');
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.INVALID_OPTION,
        `gateway config controlPlane.publicKeys.${i}: cannot read ${entry}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  });
}
