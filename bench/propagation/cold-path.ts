/**
 * bench/propagation/cold-path: why one subscriber is so far from the floor. A flip is rare, so
 * the code that applies it runs cold: on these shared 2-core machines, code and data not touched
 * in the last few milliseconds run many times slower than when warm, whether the process slept,
 * spun on the clock or crunched numbers meanwhile (so it is not our process evicting itself).
 * This measures the three steps a subscriber takes for a flip it has not seen (JSON.parse, the
 * record check, the hash check), back to back (warm) and after 1, 10 and 100 ms of sleep or of
 * pure arithmetic. Medians of 41 tries each; final line JSON.
 *
 * Usage: node dist/bench/propagation/cold-path.js
 */
import { loadavg } from 'node:os';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  parseFlipRecord,
  verifyRecordHash,
} from '../../src/model/flip-record.js';
import { median, round } from '../internal/stats.js';

const TRIES = 41;
const record = (i: number): string =>
  JSON.stringify(
    chainRecord(
      parseFlipInput({
        actor: 'bench',
        action: 'halt',
        selector: { tenant: `t-${i}` },
        reason: 'cold path bench',
      }),
      { seq: i, hash: GENESIS_HASH },
      new Date(),
    ),
  );

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let sink = 0;
const crunch = (ms: number): void => {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) for (let j = 0; j < 10_000; j++) x = (x * 31 + j) | 0;
  sink ^= x;
};

async function measure(
  pause: (() => Promise<void> | void) | undefined,
): Promise<{ json: number; check: number; hash: number }> {
  const json: number[] = [];
  const check: number[] = [];
  const hash: number[] = [];
  for (let i = 0; i < TRIES; i++) {
    const data = record(1_000_000 + i);
    if (pause) await pause();
    const t0 = performance.now();
    const raw: unknown = JSON.parse(data);
    const t1 = performance.now();
    const r = parseFlipRecord(raw);
    const t2 = performance.now();
    if (!verifyRecordHash(r)) throw new Error('hash mismatch');
    const t3 = performance.now();
    json.push((t1 - t0) * 1000);
    check.push((t2 - t1) * 1000);
    hash.push((t3 - t2) * 1000);
  }
  return {
    json: round(median(json), 1),
    check: round(median(check), 1),
    hash: round(median(hash), 1),
  };
}

async function main(): Promise<void> {
  for (let i = 0; i < 2000; i++) verifyRecordHash(parseFlipRecord(JSON.parse(record(i))));
  const cases: [string, (() => Promise<void> | void) | undefined][] = [
    ['warm (back to back)', undefined],
    ['after 1 ms asleep', () => sleep(1)],
    ['after 10 ms asleep', () => sleep(10)],
    ['after 100 ms asleep', () => sleep(100)],
    ['after 10 ms of arithmetic', () => crunch(10)],
    ['after 100 ms of arithmetic', () => crunch(100)],
  ];
  const rows: Record<string, unknown>[] = [];
  let warmTotal = 0;
  for (const [name, pause] of cases) {
    const m = await measure(pause);
    const total = m.json + m.check + m.hash;
    if (pause === undefined) warmTotal = total;
    rows.push({ case: name, ...m, totalUs: round(total, 1) });
    console.log(
      `${name.padEnd(28)} JSON.parse ${m.json} us, record check ${m.check} us, hash ${m.hash} us` +
        ` | total ${total.toFixed(1)} us (${(total / warmTotal).toFixed(1)}x warm)`,
    );
  }
  console.log(
    JSON.stringify({
      bench: 'propagation-cold-path',
      tries: TRIES,
      load: loadavg().map((l) => Math.round(l * 100) / 100),
      rows,
      sink: sink & 1,
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
