import type { FlipRecord } from '../../model/flip-record.js';
import type { KillSnapshot } from '../../model/kill-state.js';
import { SELECTOR_KEYS, formatSelector, levelOf, type Selector } from '../../model/selector.js';
import type { FlipFleetStatus } from '../../protocol/answers.js';

/**
 * One line per flip: `#5 2026-… halt {tenant=acme} mode=discard by ada: incident 42`. The caller
 * prints it through `CommandOutput.line`, which escapes what the flip carries. KS-5.3.7
 */
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

/**
 * The fleet's answer as text: who acknowledged, the laggards, and when the stop was complete. A
 * resume stops nothing, so its answer says when the fleet had it, never "stop complete". KS-5.3.14
 */
export function formatFleet(
  f: FlipFleetStatus | null,
  action: 'halt' | 'resume' = 'halt',
): string[] {
  if (f === null) return ['fleet: not tracked by this control plane'];
  const total = f.acknowledged.length + f.laggards.length;
  const lines: string[] = [];
  const halt = action === 'halt';
  if (f.complete) {
    lines.push(
      (halt
        ? `stop complete after ${f.completeAfterMs} ms (at ${f.completeAt}): `
        : `resume reached the fleet after ${f.completeAfterMs} ms (at ${f.completeAt}): `) +
        `${f.applied} of ${total} leased worker(s) acknowledged` +
        (f.laggards.length
          ? halt
            ? `, ${f.laggards.length} stopped by lease expiry`
            : `, ${f.laggards.length} without a lease (failing closed until they catch up)`
          : ''),
    );
  } else {
    lines.push(
      `${halt ? 'stop NOT complete yet' : 'resume not acknowledged by every worker yet'}: ${f.applied} of ${total} leased worker(s) acknowledged; waiting on ${f.laggards.filter((l) => !l.leaseExpired).length}`,
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
      } at ${l.leaseExpiresAt}`,
    );
  }
  for (const s of f.alreadyStale) {
    lines.push(
      `  already stale ${s.workerId}${s.release ? ` (${s.release})` : ''} (no lease: failing closed on its own)`,
    );
  }
  if (total === 0 && f.alreadyStale.length === 0)
    lines.push(`  no worker held a lease when the ${halt ? 'flip' : 'resume'} was appended`);
  if (halt && f.matched !== undefined) {
    const m = f.matched;
    lines.push(
      `matched on ${m.workers} reporting worker(s): ${m.inFlight} in flight, ${m.queued} queued, ${m.recent} recent context(s)`,
    );
  }
  return lines;
}

/** `tenant ACME`, `tenant acme and feature auto-reply`: a selector in words. */
function selectorWords(s: Selector): string {
  const names: Record<string, string> = {
    tenant: 'tenant',
    feature: 'feature',
    runId: 'run',
    capability: 'capability',
  };
  return SELECTOR_KEYS.filter((k) => s[k] !== undefined)
    .map((k) => `${names[k]} ${s[k]}`)
    .join(' and ');
}

/**
 * The warning when a halt matched nothing anywhere (KS-16.4.2): every worker that acknowledged
 * reported, and none had a call in flight, a queued task or a recent context it matches, so the
 * selector is likely a slip (`ACME` for `acme`). Undefined when it matched something, is global,
 * or not every acknowledging worker could say.
 */
export function matchedNothingWarning(
  f: FlipFleetStatus | null,
  selector: Selector,
): string | undefined {
  const m = f?.matched;
  if (f === null || m === undefined || Object.keys(selector).length === 0) return undefined;
  if (m.workers === 0 || m.workers < f.applied) return undefined;
  if (m.inFlight + m.queued + m.recent > 0) return undefined;
  const guess = m.similar.length > 0 ? `; did you mean ${m.similar.join(' or ')}?` : '';
  return `WARNING: no worker has seen ${selectorWords(selector)}: the halt matched no call in flight, no queued task and no context evaluated in the last 10 minutes on ${m.workers} worker(s)${guess}`;
}

/** The `killswitch` selector flags that name `s` exactly (`--global` for `{}`). */
export function selectorFlags(s: Selector): string {
  const parts: string[] = [];
  if (s.tenant !== undefined) parts.push(`--tenant ${shellWord(s.tenant)}`);
  if (s.feature !== undefined) parts.push(`--feature ${shellWord(s.feature)}`);
  if (s.runId !== undefined) parts.push(`--run ${shellWord(s.runId)}`);
  if (s.capability !== undefined) parts.push(`--capability ${shellWord(s.capability)}`);
  return parts.length === 0 ? '--global' : parts.join(' ');
}

/** A word quoted for a POSIX shell when it needs to be. */
export function shellWord(s: string): string {
  if (/^<[a-z ]+>$/.test(s)) return s; // a placeholder, for the operator to fill in
  return /^[A-Za-z0-9._:@/+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Active halts close to `s`: one of them shares an attribute with it, equal when case is ignored
 * (`--tenant ACME` against `{tenant=acme}`), or either is the global halt. A resume that matched
 * no halt exactly lists these, each with the command that lifts it. KS-5.3.13
 */
export function closeHalts(
  s: Selector,
  halts: KillSnapshot['halts'],
): KillSnapshot['halts'][number][] {
  const keys = Object.keys(s) as (keyof Selector)[];
  return halts.filter((h) => {
    const hk = Object.keys(h.selector) as (keyof Selector)[];
    if (keys.length === 0 || hk.length === 0) return true;
    return keys.some((k) => {
      const a = s[k];
      const b = h.selector[k];
      return typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
    });
  });
}
