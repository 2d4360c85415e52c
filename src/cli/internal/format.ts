import type { FlipRecord } from '../../model/flip-record.js';
import { formatSelector, levelOf } from '../../model/selector.js';
import type { FlipFleetStatus } from '../../server/fleet-tracker.js';

/** One line per flip: `#5 2026-… halt {tenant=acme} mode=discard by ada: incident 42`. */
export function formatFlipLine(r: FlipRecord): string {
  const extra = [
    r.mode ? `mode=${r.mode}` : '',
    r.release ? `release=${r.release}` : '',
    r.source ? `source=${r.source}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return `#${r.seq} ${r.at} ${r.action} ${levelOf(r.selector)} ${formatSelector(r.selector)}${extra ? ` ${extra}` : ''} by ${r.actor}: ${r.reason}`;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The fleet's answer as text: who acknowledged, the laggards, and when the stop was complete. */
export function formatFleet(f: FlipFleetStatus | null): string[] {
  if (f === null) return ['fleet: not tracked by this control plane'];
  const total = f.acknowledged.length + f.laggards.length;
  const lines: string[] = [];
  if (f.complete) {
    lines.push(
      `stop complete after ${f.completeAfterMs} ms (at ${iso(f.completeAt!)}): ${f.applied} of ${total} leased worker(s) acknowledged` +
        (f.laggards.length ? `, ${f.laggards.length} stopped by lease expiry` : ''),
    );
  } else {
    lines.push(
      `stop NOT complete yet: ${f.applied} of ${total} leased worker(s) acknowledged; waiting on ${f.laggards.filter((l) => !l.leaseExpired).length}`,
    );
  }
  for (const a of f.acknowledged) {
    lines.push(
      `  acknowledged  ${a.workerId}${a.release ? ` (${a.release})` : ''} after ${a.latencyMs} ms`,
    );
  }
  for (const l of f.laggards) {
    lines.push(
      `  laggard       ${l.workerId}${l.release ? ` (${l.release})` : ''} last ack seq ${l.lastAckSeq ?? '-'}, lease ${
        l.leaseExpired ? 'ran out' : 'runs out'
      } at ${iso(l.leaseExpiresAt)}`,
    );
  }
  for (const s of f.alreadyStale) {
    lines.push(
      `  already stale ${s.workerId}${s.release ? ` (${s.release})` : ''} (no lease: failing closed on its own)`,
    );
  }
  if (total === 0 && f.alreadyStale.length === 0)
    lines.push('  no worker held a lease when the flip was appended');
  return lines;
}
