import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadTokens, TOKENS_FILE, type LoadTokensOptions } from '../../auth/load-tokens.js';
import { watchTokenFile, type TokenFileWatcher } from '../../auth/watch-token-file.js';
import { TokenAuthenticator } from '../../auth/token-authenticator.js';
import { isLoopbackHost } from '../../auth/is-loopback-host.js';
import { startControlPlane, type ControlPlane } from '../../server/control-plane.js';
import { mountConsole } from '../../console/console-routes.js';
import { mountAlertmanager } from '../../server/alertmanager-webhook.js';
import { ReleaseGate } from '../../server/release-gate.js';
import { checkpointRoutes } from '../../server/checkpoint-route.js';
import { SigningKey } from '../../integrity/signing-key.js';
import type { FlipLogStore } from '../../store/flip-log-store.js';
import { ExitCode, type CliCommand, type CliIo } from '../internal/command.js';
import { CommandOutput, USAGE_ERROR_CODE } from '../internal/output.js';
import { UsageError, intFlag } from '../internal/remote.js';
import { createStore, dataDirOf } from '../internal/store-factory.js';

const HELP = `usage: killswitch serve [--data-dir <dir>] [--store <path | postgres://… | memory>]
                       [--host <addr>] [--port <n>] [--tokens <file>] [--allow-host <name>]…
                       [--json]

Runs the control plane: the HTTP API, the SSE stream and the fleet's acknowledgements. With no
flags: a file flip log in ./.killswitch/flips.jsonl, 127.0.0.1, port 7411. KS-5.3.1
Also serves the web console at /, GET /metrics (any token) and POST /v1/alerts/alertmanager
(an operator token scoped to what alerts may halt, or admin). KS-11
Resumes are gated (KS-10.5): a resume must name a release marked green (killswitch release),
and is refused while a connected worker reports a red one; verdicts are kept in
<dataDir>/releases.jsonl.

  --data-dir <dir>        data directory (default $KILLSWITCH_DATA_DIR or ./.killswitch)
  --store <spec>          flip log: a file path (default <dataDir>/flips.jsonl), a postgres:// URL,
                          or 'memory' (not durable)
  --host <addr>           address to bind (default 127.0.0.1); a non-loopback address needs tokens
  --port <n>              port, 0 for a random free one (default 7411)
  --tokens <file>         token file (default <dataDir>/tokens.json when present)
  --allow-host <name>     a name clients use for this server (its DNS name, a proxy's Host);
                          repeatable. Requests whose Host is neither the bound address nor
                          localhost (on loopback) nor such a name are refused (421, KS-17.9.2)
  --tls-cert <file>       serve HTTPS with this certificate (PEM; with --tls-key); clients need
  --tls-key <file>        its CA: --ca <file> on the CLI, tls: { ca } on workers (KS-17.10.1)
  --signing-key <file>    an Ed25519 key (PKCS#8 PEM, mode 0600; 'killswitch key create' makes
                          one): every record is signed as it is appended (file or postgres://
                          store), and so are GET /v1/checkpoint and every stream snapshot
                          (KS-17.7.1, KS-17.7.9); keep it where the store's writer cannot read it
  --max-flips-per-second <n>  flips per token per second, bursts of twice that (default 20)
  --max-active-halts <n>  active halts at most; resumes always pass (default 10000)
  --max-connections <n>   connections held at most (default 80 % of ulimit -n less 64, 64..8192)
  --max-workers <n>       workers tracked at most (default 10000)
  --heartbeat-ms <ms>     stream heartbeat interval (default 1000)
  --stale-after-ms <ms>   worker lease (default 3000)
  --replica-timeout-ms <ms>  with a postgres:// store, replicas share the fleet (KS-6.6); one
                          silent for this long is unknown and named in flip answers (default 1500)
  --json                  print the start line as JSON

tokens: a token file or KILLSWITCH_TOKENS (JSON: [{ name, token | hash | sha256,
role: viewer|worker|operator|admin, scopes?: [{ tenant?, feature?, runId?, capability? }], resume?,
expiresAt?, workers?: ["w-*"] }]) or KILLSWITCH_ADMIN_TOKEN; 'killswitch token create' makes a token
and its hashed entry. The token file is reloaded when it changes and on SIGHUP (KS-17.3.1); one that
others may read must hold only hashed entries (KS-17.3.2). With none, an admin token is generated
into <dataDir>/admin.token (mode 0600); the CLI reads it when it talks to a local server.

Stops cleanly on SIGINT or SIGTERM. exit codes: 0 stopped, 1 could not start, 2 usage error`;

/** `killswitch serve`: the control plane. Resolves only once it stops (SIGINT/SIGTERM). */
export const command: CliCommand = {
  name: 'serve',
  summary: 'run the control plane (HTTP API, SSE stream, acknowledgements)',
  help: HELP,
  async run(argv, io) {
    const cli = new CommandOutput('serve', io, argv.includes('--json'));
    const options = {
      'data-dir': { type: 'string' },
      store: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      tokens: { type: 'string' },
      'allow-host': { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'signing-key': { type: 'string' },
      'max-flips-per-second': { type: 'string' },
      'max-active-halts': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-workers': { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      'stale-after-ms': { type: 'string' },
      'replica-timeout-ms': { type: 'string' },
      json: { type: 'boolean', default: false },
    } as const;
    let values;
    let port: number;
    let heartbeatMs: number | undefined;
    let staleAfterMs: number | undefined;
    let replicaTimeoutMs: number | undefined;
    const limits: Record<string, number> = {};
    try {
      values = parseArgs({
        args: [...argv],
        options,
        strict: true,
        allowPositionals: false,
      }).values;
      port = intFlag('port', values.port, 65535) ?? 7411;
      heartbeatMs = intFlag('heartbeat-ms', values['heartbeat-ms']);
      staleAfterMs = intFlag('stale-after-ms', values['stale-after-ms']);
      replicaTimeoutMs = intFlag('replica-timeout-ms', values['replica-timeout-ms']);
      if (replicaTimeoutMs === 0) throw new UsageError('--replica-timeout-ms must be positive');
      // KS-17.8: the limits an operator tunes; checked again (ranges) by startControlPlane.
      for (const [flag, option] of [
        ['max-flips-per-second', 'maxFlipsPerSecond'],
        ['max-active-halts', 'maxActiveHalts'],
        ['max-connections', 'maxConnections'],
        ['max-workers', 'maxWorkers'],
      ] as const) {
        const v = intFlag(flag, values[flag], 100_000_000);
        if (v === 0) throw new UsageError(`--${flag} must be positive`);
        if (v !== undefined) limits[option] = v;
      }
      if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined))
        throw new UsageError('--tls-cert and --tls-key go together');
      if (heartbeatMs === 0 || staleAfterMs === 0)
        throw new UsageError('--heartbeat-ms and --stale-after-ms must be positive');
    } catch (err) {
      return cli.usage(err, Object.keys(options));
    }
    const host = values.host ?? '127.0.0.1';
    const dataDir = dataDirOf(values['data-dir'], io.env);
    const loopback = isLoopbackHost(host);

    let store: FlipLogStore | undefined;
    let storeDescription: string | undefined;
    let stopped: Promise<number> | undefined;
    let cp: ControlPlane | undefined;
    let releases: ReleaseGate | undefined;
    let watcher: TokenFileWatcher | undefined;
    try {
      const tokenOptions: LoadTokensOptions = {
        dataDir,
        env: io.env,
        ...(values.tokens === undefined ? {} : { tokensFile: values.tokens }),
        // KS-5.2.8: off loopback, a generated token is no substitute for configured ones.
        generate: loopback,
      };
      const tokens = await loadTokens(tokenOptions);
      for (const w of tokens.warnings) io.stderr(`killswitch serve: warning: ${w}`);
      if (!tokens.configured && !loopback) {
        return cli.fail({
          code: USAGE_ERROR_CODE,
          message: `refusing to bind ${host} without configured tokens (--tokens, KILLSWITCH_TOKENS or KILLSWITCH_ADMIN_TOKEN)`,
          exit: ExitCode.USAGE,
        });
      }
      const signingKey =
        values['signing-key'] === undefined
          ? undefined
          : await SigningKey.load(values['signing-key']);
      const created = await createStore(values.store, dataDir, { signingKey });
      store = created.store;
      storeDescription = created.description;
      // KS-10.5.2 release verdicts live next to the data the server owns.
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
      releases = new ReleaseGate({
        path: join(dataDir, 'releases.jsonl'),
        logger: { warn: (m) => io.stderr(`killswitch serve: warning: ${m}`) },
        ...(signingKey === undefined ? {} : { signingKey }),
      });
      const auth = new TokenAuthenticator({ tokens: tokens.tokens });
      const tls =
        values['tls-cert'] === undefined || values['tls-key'] === undefined
          ? undefined
          : { cert: await readFile(values['tls-cert']), key: await readFile(values['tls-key']) };
      cp = await startControlPlane({
        store,
        releaseGate: releases,
        host,
        port,
        auth,
        ...limits,
        ...(tls === undefined ? {} : { tls }),
        ...(signingKey === undefined ? {} : { signingKey }),
        ...(values['allow-host'] === undefined ? {} : { allowedHosts: values['allow-host'] }),
        ...(heartbeatMs === undefined ? {} : { heartbeatMs }),
        ...(staleAfterMs === undefined ? {} : { staleAfterMs }),
        ...(replicaTimeoutMs === undefined ? {} : { replicaTimeoutMs }),
        logger: {
          info: (m) => io.stdout(m),
          warn: (m) => io.stderr(`killswitch serve: warning: ${m}`),
          error: (m) => io.stderr(`killswitch serve: error: ${m}`),
        },
      });
      // KS-11: the console, the Alertmanager webhook, and /metrics when prom-client is installed.
      mountConsole(cp);
      mountAlertmanager(cp, store);
      // KS-17.7.4 the head for a monitor to keep elsewhere, signed with the key when there is one.
      cp.router.add(...checkpointRoutes(store, signingKey));
      try {
        const { mountMetrics } = await import('../../metrics/control-plane-metrics.js');
        await mountMetrics(cp, store);
      } catch (err) {
        io.stderr(
          `killswitch serve: warning: /metrics is off (${err instanceof Error ? err.message : String(err)})`,
        );
      }
      // KS-17.3.1: revoking or rotating a token needs no restart.
      watcher = watchTokenFile({
        auth,
        file: values.tokens ?? join(dataDir, TOKENS_FILE),
        load: async () => {
          const again = await loadTokens(tokenOptions);
          if (!again.configured && !loopback) {
            throw new Error(`the reloaded token set is empty; refusing it on ${host}`);
          }
          for (const w of again.warnings) io.stderr(`killswitch serve: warning: ${w}`);
          return again.tokens;
        },
        onReload: (count) => io.stderr(`killswitch serve: reloaded the tokens (${count})`),
        onError: (err) =>
          io.stderr(
            `killswitch serve: error: tokens not reloaded, the previous ones stay in force: ${err.message}`,
          ),
      });
      // Handle SIGINT/SIGTERM before announcing the URL: a supervisor may signal as soon as it
      // reads the start line, and a SIGTERM that arrives before the handler exists kills the
      // process uncleanly (KS-5.3.6; seen under load by the KS-13.6 tamper suite).
      stopped = waitForSignal(cp, store, io, releases, watcher);
      if (values.json === true) {
        io.stdout(
          JSON.stringify({
            url: cp.url,
            store: created.description,
            head: cp.snapshot().seq,
            tokens: tokens.sources,
            ...(tokens.generatedTokenPath === undefined
              ? {}
              : { generatedTokenPath: tokens.generatedTokenPath }),
          }),
        );
      } else {
        io.stdout(`killswitch control plane listening on ${cp.url}`);
        io.stdout(`  flip log: ${created.description} (head seq ${cp.snapshot().seq})`);
        if (tokens.generatedTokenPath !== undefined) {
          io.stdout(
            `  ${tokens.created ? 'generated an' : 'using the generated'} admin token in ${tokens.generatedTokenPath} (mode 0600); local CLI commands read it`,
          );
        } else {
          io.stdout(`  tokens from ${tokens.sources.join(', ')}`);
        }
      }
    } catch (err) {
      const code = (err as { code?: unknown } | undefined)?.code;
      cli.fail({
        code: typeof code === 'string' && code.startsWith('KS_') ? code : 'KS_INTERNAL',
        message:
          `cannot start: ${err instanceof Error ? err.message : String(err)}` +
          // Name the log, so an operator knows which file to inspect (KS-13.6.1).
          (storeDescription === undefined ? '' : ` (flip log: ${storeDescription})`) +
          (code === 'KS_LOG_CORRUPT'
            ? "; it will not serve a log it cannot verify: run 'killswitch verify <file>' to see the first bad record"
            : ''),
        exit: ExitCode.FAILED,
      });
      watcher?.close();
      await cp?.close().catch(() => {});
      await store?.close().catch(() => {});
      await releases?.close().catch(() => {});
      return ExitCode.FAILED;
    }
    return stopped ?? waitForSignal(cp, store, io, releases, watcher);
  },
};

function waitForSignal(
  cp: ControlPlane,
  store: FlipLogStore,
  io: CliIo,
  releases?: ReleaseGate,
  watcher?: TokenFileWatcher,
): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // A second signal while closing: the operator wants out now.
        process.exit(130);
      }
      stopping = true;
      io.stderr(`killswitch serve: ${signal}, closing`);
      void (async () => {
        let code: number = ExitCode.OK;
        watcher?.close();
        try {
          await cp.close();
          await store.close();
          await releases?.close();
        } catch (err) {
          io.stderr(`killswitch serve: error while closing: ${(err as Error).message}`);
          code = ExitCode.FAILED;
        }
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(code);
      })();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
