/**
 * bench/acks: CPU per acknowledgement, client and server together in one process (issue 19,
 * KS-6.7): a control plane on the memory store and, alternating in one run,
 *   - lines: the remote source's `AckChannel` (one member) once its acknowledgement stream is
 *     open, each acknowledgement one line of `POST /v1/acks/stream`;
 *   - requests: the same body as `POST /v1/acks` over a keep-alive node:http agent with one
 *     socket, as the channel sends it without a stream.
 * One acknowledgement at a time (the next when the last was answered); reported: CPU (user +
 * system) and wall time per acknowledgement, the median over rounds, and the load average.
 *
 * Usage: node dist/bench/acks/ack-cpu.js [--acks 1000] [--rounds 3]
 */
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { AckChannel, type AckMember } from '../../providers/remote/ack-channel.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { systemClock } from '../../src/internal/clock.js';
import { startControlPlane } from '../../src/server/index.js';
import { median, round } from '../internal/stats.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : def;
};
const ACKS = arg('acks', 1000);
const ROUNDS = arg('rounds', 3);
const TOKEN = 'bench-acks-admin-token-0123456789';

const cp = await startControlPlane({
  store: new MemoryFlipLogStore(),
  port: 0,
  auth: new TokenAuthenticator({ tokens: [{ name: 'admin', token: TOKEN, role: 'admin' }] }),
  logger: { info() {}, warn() {}, error() {} },
});
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

const post = (body: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const req = request(
      `${cp.url}/v1/acks`,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });

const first = JSON.parse(
  await new Promise<string>((resolve, reject) => {
    const body = JSON.stringify({ workerId: 'w-probe', seq: 0 });
    const req = request(
      `${cp.url}/v1/acks`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', reject);
    req.end(body);
  }),
) as { logId: string; hash: string };
const body = JSON.stringify({ workerId: 'w-1', seq: 0, logId: first.logId, hash: first.hash });

let wake: (() => void) | undefined;
const member: AckMember = {
  workerId: 'w-1',
  release: undefined,
  staleAfterMs: 3000,
  clock: systemClock,
  toAck: () => ({ seq: 0, logId: first.logId, hash: first.hash }),
  answered: (_seq, _sentAt, answer) => {
    if (answer.status !== 200) throw new Error(`answered ${answer.status}: ${answer.text}`);
    wake?.();
  },
  failed: (err) => {
    throw err;
  },
};
const channel = new AckChannel(
  { base: cp.url, token: TOKEN, fetch: undefined, clock: systemClock },
  () => {},
);
channel.join(member);
const line = () =>
  new Promise<void>((resolve) => {
    wake = resolve;
    channel.request(member);
  });
const viaRequest = async () => {
  if ((await post(body)) !== 200) throw new Error('POST /v1/acks refused');
};

async function measure(one: () => Promise<void>): Promise<{ cpuUs: number; wallUs: number }> {
  for (let i = 0; i < 100; i++) await one();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < ACKS; i++) await one();
  const c = process.cpuUsage(c0);
  return { cpuUs: (c.user + c.system) / ACKS, wallUs: ((performance.now() - t0) * 1000) / ACKS };
}

// The first acknowledgement goes as a request and opens the stream beside it.
await line();
const deadline = performance.now() + 5000;
while (!channel.streaming && performance.now() < deadline) await line();
if (!channel.streaming) throw new Error('the acknowledgement stream did not open');

const load0 = loadavg()[0]!;
const lines: { cpuUs: number; wallUs: number }[] = [];
const requests: { cpuUs: number; wallUs: number }[] = [];
for (let r = 0; r < ROUNDS; r++) {
  lines.push(await measure(line));
  requests.push(await measure(viaRequest));
}
const summary = (xs: { cpuUs: number; wallUs: number }[]) => ({
  cpuUsPerAck: round(median(xs.map((x) => x.cpuUs)), 1),
  wallUsPerAck: round(median(xs.map((x) => x.wallUs)), 1),
});
const out = {
  bench: 'acks',
  acksPerRound: ACKS,
  rounds: ROUNDS,
  loadavg1m: [round(load0), round(loadavg()[0]!)],
  lines: summary(lines),
  requests: summary(requests),
};
process.stderr.write(
  `lines: ${out.lines.cpuUsPerAck} µs CPU, ${out.lines.wallUsPerAck} µs wall per ack | requests: ${out.requests.cpuUsPerAck} µs CPU, ${out.requests.wallUsPerAck} µs wall | load ${out.loadavg1m.join(' -> ')}\n`,
);
console.log(JSON.stringify(out));
channel.leave(member);
agent.destroy();
await cp.close();
