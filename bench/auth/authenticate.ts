/**
 * bench/auth: what `TokenAuthenticator.authenticate` costs per request (issue 19), for each kind
 * of entry (plain `token`, salted scrypt `hash` once verified, deprecated `sha256`) and for an
 * unknown token, measured two ways in one process:
 *   - warm: back-to-back calls (the loop's mean, µs per call);
 *   - idle: one call after `--idle` ms of sleep, as a request arriving between flips finds the
 *     code (median and p90 over `--idle-calls` calls, µs).
 * The server calls `authenticate` on every request; the first check of a hashed token (scrypt)
 * is done before timing, as a server does it once per token per process.
 *
 * Usage: node dist/bench/auth/authenticate.js [--warm 100000] [--idle 20] [--idle-calls 60]
 * Output: a table on stderr and one JSON line on stdout (with the load average).
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createToken, hashToken, sha256Token, TokenAuthenticator } from '../../src/auth/index.js';
import { quantile, round } from '../internal/stats.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : def;
};
const WARM = arg('warm', 100_000);
const IDLE_MS = arg('idle', 20);
const IDLE_CALLS = arg('idle-calls', 60);

const plain = createToken();
const hashed = createToken();
const legacy = createToken();
const auth = new TokenAuthenticator({
  tokens: [
    { name: 'plain', token: plain, role: 'admin' },
    { name: 'hashed', hash: hashToken(hashed), role: 'worker', workers: ['w-*'] },
    { name: 'legacy', sha256: sha256Token(legacy), role: 'viewer' },
  ],
});
await auth.authenticateAsync(`Bearer ${hashed}`); // the one scrypt check, as a server does it

const cases: { name: string; header: string; known: boolean }[] = [
  { name: 'token', header: `Bearer ${plain}`, known: true },
  { name: 'hash (verified)', header: `Bearer ${hashed}`, known: true },
  { name: 'sha256', header: `Bearer ${legacy}`, known: true },
  { name: 'unknown', header: `Bearer ${createToken()}`, known: false },
];

const once = (header: string, known: boolean): void => {
  try {
    auth.authenticate(header);
    if (!known) throw new Error('an unknown token authenticated');
  } catch (err) {
    if (known) throw err;
  }
};

const loadStart = loadavg()[0]!;
const rows = [];
for (const c of cases) {
  for (let i = 0; i < 2_000; i++) once(c.header, c.known);
  const t0 = performance.now();
  for (let i = 0; i < WARM; i++) once(c.header, c.known);
  const warmUs = ((performance.now() - t0) * 1000) / WARM;
  const idle: number[] = [];
  for (let i = 0; i < IDLE_CALLS; i++) {
    await sleep(IDLE_MS);
    const a = performance.now();
    once(c.header, c.known);
    idle.push((performance.now() - a) * 1000);
  }
  idle.sort((a, b) => a - b);
  rows.push({
    entry: c.name,
    warmUs: round(warmUs, 2),
    idleP50Us: round(quantile(idle, 0.5), 1),
    idleP90Us: round(quantile(idle, 0.9), 1),
  });
}
const loadEnd = loadavg()[0]!;
for (const r of rows) {
  process.stderr.write(
    `${r.entry.padEnd(16)} warm ${String(r.warmUs).padStart(6)} µs | after ${IDLE_MS} ms idle p50 ${r.idleP50Us} µs, p90 ${r.idleP90Us} µs\n`,
  );
}
console.log(
  JSON.stringify({
    bench: 'auth',
    warmCalls: WARM,
    idleMs: IDLE_MS,
    idleCalls: IDLE_CALLS,
    loadavg1m: [round(loadStart), round(loadEnd)],
    rows,
  }),
);
