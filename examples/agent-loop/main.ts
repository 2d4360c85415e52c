/**
 * A runnable agent loop under the kill switch. One process runs:
 * - a slow local LLM server that streams tokens, and two tool services (CRM, email);
 * - a producer that enqueues agent tasks on a BullMQ queue (Redis 127.0.0.1:6379), gated by the
 *   kill switch (an enqueue that matches a halt is refused);
 * - a BullMQ worker that runs each task: stream a draft from the LLM, write a CRM note, send an
 *   email. Every call goes through the EffectGuard, which reads `kill-switch` from the
 *   KillSwitchProvider over a RemoteFlipSource streaming from `killswitch serve`.
 *
 * Flip with the CLI at any level and watch it stop; an in-flight LLM call is aborted and the
 * example prints how fast the caller was freed and the socket closed. See README.md.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { OpenFeature, ProviderEvents } from '@openfeature/server-sdk';
import {
  DuplicateEffectError,
  EffectGuard,
  FileSideEffectLedger,
  HaltedError,
  KillSwitchProvider,
  QueueController,
  type KillContext,
} from 'openfeature-kill-switch';
import { BullMqTaskQueue } from 'openfeature-kill-switch/providers/bullmq';
import { RemoteFlipSource } from 'openfeature-kill-switch/providers/remote';
import { startLlmServer } from './llm-server.js';
import { startToolServices } from './tool-services.js';

const env = process.env;
const url = env['KILLSWITCH_URL'] ?? 'http://127.0.0.1:7411';
const dataDir = resolve(env['KILLSWITCH_DATA_DIR'] ?? './.killswitch');
const workerId = env['EXAMPLE_WORKER_ID'] ?? `agent-loop-${process.pid}`;
const release = env['EXAMPLE_RELEASE'] ?? 'v1';
const queueName = env['EXAMPLE_QUEUE'] ?? 'agent-loop';
const redis = { host: '127.0.0.1', port: Number(env['EXAMPLE_REDIS_PORT'] ?? 6379) };
const prefix = env['EXAMPLE_REDIS_PREFIX'] ?? 'bull';
const everyMs = Number(env['EXAMPLE_TASK_EVERY_MS'] ?? 1000);
const ledgerPath = env['EXAMPLE_LEDGER'] ?? join(dataDir, 'agent-loop-effects.jsonl');

interface AgentTask {
  readonly tenant: string;
  readonly feature: string;
  readonly customer: string;
}

const t0 = performance.now();
function log(line: string): void {
  process.stdout.write(`[${((performance.now() - t0) / 1000).toFixed(2)}s] ${line}\n`);
}

/** The token: $KILLSWITCH_TOKEN, else the admin token `killswitch serve` generated locally. */
async function token(): Promise<string | undefined> {
  if (env['KILLSWITCH_TOKEN']) return env['KILLSWITCH_TOKEN'];
  try {
    return (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  } catch {
    return undefined;
  }
}

// --- the kill switch: provider over the control plane's stream, guard over a ledger ----------
const tok = await token();
const provider = new KillSwitchProvider({
  source: new RemoteFlipSource({
    urls: [url],
    workerId,
    release,
    ...(tok !== undefined ? { token: tok } : {}),
  }),
});
await OpenFeature.setProviderAndWait('agent-loop', provider);
const client = OpenFeature.getClient('agent-loop');
const ledger = new FileSideEffectLedger({ path: ledgerPath });
await ledger.open();
const guard = new EffectGuard({ client, ledger, logger: { warn: (m) => log(`warning: ${m}`) } });
for (let i = 0; provider.sourceStatus !== 'open'; i++) {
  if (i === 500) log(`still waiting for ${url} (is killswitch serve running?)`);
  await new Promise((r) => setTimeout(r, 10));
}
log(`worker ${workerId} (release ${release}) following ${url}; ledger ${ledgerPath}`);

// --- the outside world ----------------------------------------------------------------------
const llm = await startLlmServer({ tokens: 40, tokenMs: 50 });
const tools = await startToolServices({
  latencyMs: 150,
  onArrival: (tool, key) => log(`  ${tool} service received ${key}`),
});

/** Streams a draft from the LLM; the signal aborts the fetch and the stream. */
async function generate(task: AgentTask, runId: string, signal: AbortSignal): Promise<string> {
  const res = await fetch(`${llm.url}/v1/generate`, {
    method: 'POST',
    headers: { 'x-request-id': runId, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: `reply to ${task.customer}` }),
    signal,
  });
  let text = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body!)
    text += decoder.decode(chunk as Uint8Array, { stream: true });
  return `${text.split('\n').filter((l) => l.startsWith('data: {')).length} tokens`;
}

async function callTool(toolUrl: string, key: string, body: unknown, signal: AbortSignal) {
  const res = await fetch(toolUrl, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
  return (await res.json()) as unknown;
}

/** One agent task: LLM draft, CRM note, email. Each is one guarded effect of the run. */
async function runTask(task: AgentTask, runId: string): Promise<void> {
  const context: KillContext = { tenant: task.tenant, feature: task.feature };
  const label = `${runId} ${task.tenant}/${task.feature}`;
  // Which step the abort reached, and when: the LLM stream or a tool call. Every step records it,
  // so the figures below are measured from the abort of the step that was running.
  let aborted: { step: string; at: number } | undefined;
  const onAbort = (step: string, signal: AbortSignal): void =>
    signal.addEventListener('abort', () => (aborted = { step, at: performance.now() }), {
      once: true,
    });
  const socketClosed = new Promise<number>((ok) => llm.onSocketClose(runId, ok));
  try {
    log(`${label}: streaming a draft from the LLM`);
    const draft = await guard.run(
      { context, runId, step: 'llm', capability: 'llm.generate' },
      (signal) => {
        onAbort('llm', signal);
        return generate(task, runId, signal);
      },
    );
    await guard.run(
      {
        context,
        runId,
        step: 'crm',
        capability: 'crm.update',
        compensation: { action: 'crm.delete-note', args: { customer: task.customer } },
      },
      (signal, { key }) => {
        onAbort('crm', signal);
        return callTool(`${tools.crmUrl}/notes`, key, { draft }, signal);
      },
    );
    await guard.run(
      {
        context,
        runId,
        step: 'email',
        capability: 'email.send',
        compensation: { action: 'email.send-correction', args: { to: task.customer } },
      },
      (signal, { key }) => {
        onAbort('email', signal);
        return callTool(`${tools.emailUrl}/send`, key, { to: task.customer }, signal);
      },
    );
    log(`${label}: done (draft of ${draft})`);
  } catch (err) {
    if (err instanceof HaltedError && err.code === 'KS_ABORTED' && aborted !== undefined) {
      const freedAt = performance.now();
      let figures = `caller freed ${(freedAt - aborted.at).toFixed(2)} ms after the halt reached the guard`;
      if (aborted.step === 'llm') {
        // The server sees the socket close once the client's FIN arrives: wait for it (<= 1 s).
        const socketClosedAt = await Promise.race([
          socketClosed,
          new Promise<number>((ok) => setTimeout(() => ok(0), 1000).unref()),
        ]);
        figures +=
          socketClosedAt > 0
            ? `; LLM socket closed after ${(socketClosedAt - aborted.at).toFixed(2)} ms`
            : '; the LLM server saw no socket close within 1 s';
      }
      log(`${label}: ABORTED in flight: ${err.message}\n    ${figures}`);
    } else if (err instanceof HaltedError) {
      log(`${label}: REFUSED before dispatch: ${err.message}`);
    } else if (err instanceof DuplicateEffectError) {
      log(`${label}: not sent again (${err.state})`);
    } else {
      log(`${label}: failed: ${(err as Error).message}`);
    }
    throw err;
  }
}

// --- the queue: BullMQ under the QueueController (producers, workers and queued tasks gated) --
// A halt's mode decides what happens to matching queued tasks: discard (the default) journals
// each one and removes it, hold parks it durably, drain lets the backlog run but takes no new one.
const queue = new BullMqTaskQueue<AgentTask>({
  name: queueName,
  connection: redis,
  prefix,
  jobOptions: { removeOnComplete: 100, removeOnFail: 100 },
  logger: { warn: (m) => log(`queue: ${m}`) },
});
const controller = new QueueController<AgentTask>({
  queue,
  watcher: guard.watcher,
  journalPath: join(dataDir, `agent-loop-${queueName}.journal.jsonl`),
  logger: { warn: (m) => log(`queue: ${m}`) },
});
await controller.start();
const consumer = await controller.work(
  async (task) => {
    await runTask(task.payload, `task-${task.id}`);
  },
  { concurrency: 2 },
);
// After a resume: release held tasks and re-enqueue the discarded ones whose halt is gone.
client.addHandler(ProviderEvents.ConfigurationChanged, () => {
  void (async () => {
    const r = await controller.resume();
    const q = await controller.requeue();
    if (r.released + q.requeued.length > 0)
      log(`queue: released ${r.released} held, re-enqueued ${q.requeued.length} discarded task(s)`);
  })().catch((err: unknown) => log(`queue: ${(err as Error).message}`));
});

const tenants = ['acme', 'globex'] as const;
const features = ['auto-reply', 'triage'] as const;
let n = 0;
const producer = setInterval(() => {
  n++;
  const task: AgentTask = {
    tenant: tenants[n % 2]!,
    feature: features[Math.floor(n / 2) % 2]!,
    customer: `customer-${n}`,
  };
  // Producers are gated too: no new work for a halted tenant or feature.
  controller
    .enqueue({ tenant: task.tenant, feature: task.feature }, task, { name: 'agent-task' })
    .catch((err: unknown) => {
      if (err instanceof HaltedError)
        log(
          `producer: enqueue for ${task.tenant}/${task.feature} refused (halted${err.flip ? ` by flip #${err.flip.seq}` : ''})`,
        );
      else log(`producer: ${(err as Error).message}`);
    });
}, everyMs);

const stats = setInterval(() => {
  void controller
    .depth()
    .then((d) =>
      log(
        `stats: crm ${tools.arrivals.crm}, email ${tools.arrivals.email} received; ` +
          `LLM streams open ${llm.streaming}; queue waiting ${d.waiting}, active ${d.active}, ` +
          `held ${d.held}; kill state ${provider.sourceStatus}`,
      ),
    )
    .catch(() => undefined);
}, 2000);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) process.exit(130);
  stopping = true;
  log(`${signal}: stopping`);
  clearInterval(producer);
  clearInterval(stats);
  await guard.close();
  await consumer.close();
  await controller.close();
  await queue.close();
  await llm.close();
  await tools.close();
  await ledger.close();
  await OpenFeature.close();
  log(`stopped; see the effects with: killswitch report --ledger ${ledgerPath}`);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
log('running; flip with: node dist/src/cli/main.js flip --tenant acme --reason "why"');
