import { parseArgs } from 'node:util';
import { ValidationError } from '../../errors.js';
import { Gateway } from '../../gateway/gateway.js';
import { loadGatewayConfig, type GatewayConfig } from '../../gateway/gateway-config.js';
import { ExitCode, type CliCommand } from '../internal/command.js';
import { CommandOutput } from '../internal/output.js';
import { intFlag } from '../internal/remote.js';

const HELP = `usage: killswitch gateway --config <gateway.json> [--port <n>] [--public-key <file>]... [--stdio] [--json]

Runs the kill-switch gateway: it follows the control plane like a worker (its own worker id,
acknowledgements, counted in a flip's stop-complete, fail closed when stale) and enforces the kill
switch where agents in any language cross the network (KS-15):
  LLM  POST /v1/chat/completions, /v1/responses, /v1/embeddings (OpenAI) and /v1/messages
       (Anthropic) proxied to the configured upstream; point the SDK's base URL at
       http://<host>:<port>/v1. A halt refuses new calls and cuts streams in flight.
  MCP  Streamable HTTP at /mcp (or stdio with --stdio) in front of the configured MCP servers;
       tools/call guarded as <upstream>.<tool>; a halt cancels calls in flight upstream.
Context: x-killswitch-tenant, x-killswitch-feature, x-killswitch-run-path headers (or W3C
baggage), MCP _meta["dev.killswitch/lineage"]. Also GET /healthz (503 while failing closed) and
GET /metrics.

  --config <file>   the gateway's JSON configuration (required; bad fields are named)
  --port <n>        override listen.port (0 for a random free port)
  --public-key <file>
                    the control plane's public signing key, PEM (repeatable; added to
                    controlPlane.publicKeys): the gateway then applies only snapshots and flips
                    the key holder signed and fails closed on anything else (KS-17.7.9)
  --stdio           serve one MCP session on stdin/stdout instead of listening (logs on stderr)
  --json            print the start line as JSON

config: { "workerId": "gateway-1",
          "controlPlane": { "urls": ["http://127.0.0.1:7411"], "tokenEnv": "KILLSWITCH_TOKEN",
                            "staleAfterMs": 3000 },
          "listen": { "host": "127.0.0.1", "port": 8787 },
          "ledger": { "kind": "file", "path": "gateway-ledger.jsonl" },
          "llm": { "openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com" },
          "mcp": { "upstreams": { "files": { "command": "npx", "args": ["my-mcp-server"] },
                                  "web": { "url": "http://127.0.0.1:9000/mcp" } } } }

Stops cleanly on SIGINT or SIGTERM. exit codes: 0 stopped, 1 could not start, 2 usage error`;

/** `killswitch gateway`: enforcement at the LLM and MCP boundary. Resolves once it stops. */
export const command: CliCommand = {
  name: 'gateway',
  summary: 'run the LLM and MCP gateway (stops agents in any language)',
  help: HELP,
  async run(argv, io) {
    const cli = new CommandOutput('gateway', io, argv.includes('--json'));
    const options = {
      config: { type: 'string' },
      port: { type: 'string' },
      'public-key': { type: 'string', multiple: true },
      stdio: { type: 'boolean' },
      json: { type: 'boolean' },
    } as const;
    let values: {
      config?: string;
      port?: string;
      'public-key'?: string[];
      stdio?: boolean;
      json?: boolean;
    };
    let port: number | undefined;
    try {
      ({ values } = parseArgs({ args: [...argv], options, allowPositionals: false, strict: true }));
      if (values.config === undefined) throw new Error('--config <gateway.json> is required');
      port = values.port === undefined ? undefined : intFlag('port', values.port, 65535);
    } catch (err) {
      return cli.usage(
        err,
        Object.keys(options).map((o) => `--${o}`),
      );
    }
    const logger = {
      info: (m: string) => io.stderr(`killswitch gateway: ${m}`),
      warn: (m: string) => io.stderr(`killswitch gateway: warning: ${m}`),
    };
    let gw: Gateway | undefined;
    let stopped: Promise<void> | undefined;
    try {
      let config: GatewayConfig = loadGatewayConfig(values.config);
      if (port !== undefined) config = { ...config, listen: { ...config.listen, port } };
      const keyFiles = values['public-key'];
      if (keyFiles !== undefined && keyFiles.length > 0) {
        // KS-17.7.9 files from the command line join the configured keys; unreadable ones fail the start.
        const publicKeys = [...(config.controlPlane.publicKeys ?? []), ...keyFiles];
        config = { ...config, controlPlane: { ...config.controlPlane, publicKeys } };
      }
      gw = await Gateway.start({ config, logger, env: io.env, listen: values.stdio !== true });
      if (values.stdio === true) {
        // stdout carries the MCP session: nothing else may be written there.
        await gw.serveStdio();
        await gw.close();
        return ExitCode.OK;
      }
      stopped = waitForSignal(gw);
      const seams = [
        config.llm !== undefined ? 'llm' : undefined,
        config.mcp !== undefined ? `mcp ${config.mcp.path}` : undefined,
      ].filter(Boolean);
      if (values.json === true) {
        cli.data({
          url: gw.url,
          workerId: gw.workerId,
          controlPlane: config.controlPlane.urls,
          signaturesChecked: config.controlPlane.publicKeys !== undefined,
          seams,
        });
      } else {
        cli.line(`killswitch gateway ${gw.workerId} listening on ${gw.url} (${seams.join(', ')})`);
        cli.line(
          `  following ${config.controlPlane.urls.join(', ')}; calls are refused until the kill state is fresh`,
        );
        cli.line(
          config.controlPlane.publicKeys === undefined
            ? '  stream signatures not checked (give --public-key or controlPlane.publicKeys)'
            : `  applying only what the control plane's key signed (${config.controlPlane.publicKeys.length} key source(s))`,
        );
      }
    } catch (err) {
      await gw?.close().catch(() => undefined);
      const code = (err as { code?: unknown } | undefined)?.code;
      return cli.fail({
        code: typeof code === 'string' && code.startsWith('KS_') ? code : 'KS_INTERNAL',
        message: `cannot start: ${err instanceof Error ? err.message : String(err)}`,
        ...(err instanceof ValidationError ? { issues: err.issues } : {}),
        exit: ExitCode.FAILED,
      });
    }
    await stopped;
    return ExitCode.OK;
  },
};

function waitForSignal(gw: Gateway): Promise<void> {
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void gw.close().finally(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
