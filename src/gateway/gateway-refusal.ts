import { ErrorCode, type HaltedError } from '../errors.js';
import { type FlipSummary } from '../model/halt-cause.js';
import { formatSelector, levelOf, type Level } from '../model/selector.js';

/**
 * The JSON-RPC error code of a tool call the kill switch refused or cut (implementation-defined
 * server error range). `data` carries `code` (`KS_HALTED` refused, nothing sent upstream;
 * `KS_ABORTED` cut in flight, cancelled upstream), `cause` and the `flip`. KS-15.3.4
 */
export const MCP_HALTED_ERROR_CODE = -32090;

/** What a refusal or an abort names, in every seam's own error format. KS-15.1.5 */
export interface GatewayRefusal {
  /** `KS_HALTED` (refused before it left) or `KS_ABORTED` (cut in flight). */
  readonly code: typeof ErrorCode.HALTED | typeof ErrorCode.ABORTED;
  /** `halted` (a matching flip), `stale` or `error` (the gateway failed closed). */
  readonly cause: HaltedError['haltCause'];
  readonly message: string;
  /** The matching flip, when one is known: seq, level and reason first. */
  readonly flip?: FlipSummary & { readonly level: Level };
}

/** Turns a {@link HaltedError} into the data every seam sends back. */
export function refusalOf(err: HaltedError): GatewayRefusal {
  const code = err.code === ErrorCode.ABORTED ? ErrorCode.ABORTED : ErrorCode.HALTED;
  return {
    code,
    cause: err.haltCause,
    message: err.message,
    ...(err.flip !== undefined
      ? {
          flip: {
            seq: err.flip.seq,
            level: levelOf(err.flip.selector),
            reason: err.flip.reason,
            id: err.flip.id,
            actor: err.flip.actor,
            selector: err.flip.selector,
            ...(err.flip.mode !== undefined ? { mode: err.flip.mode } : {}),
          },
        }
      : {}),
  };
}

/**
 * The one-line text every seam's error carries: what happened, and the flip (seq, level, reason)
 * or why the gateway failed closed. No run keys or call ids: the client knows its own call.
 */
export function refusalText(r: GatewayRefusal): string {
  const verb = r.code === 'KS_ABORTED' ? 'cut in flight' : 'refused';
  if (r.flip !== undefined) {
    const f = r.flip;
    return `kill switch: call ${verb}: halted by flip #${f.seq} at level ${f.level} ${formatSelector(f.selector)} by ${f.actor}: ${f.reason}`;
  }
  if (r.cause === 'stale')
    return `kill switch: call ${verb}: the gateway cannot confirm the kill state (stale; failing closed)`;
  return `kill switch: call ${verb}: the kill switch could not be evaluated (failing closed)`;
}

/** The `killswitch` member every error body carries (machine-readable). */
export function refusalData(r: GatewayRefusal): Record<string, unknown> {
  return {
    code: r.code,
    cause: r.cause,
    ...(r.flip !== undefined ? { flip: r.flip } : {}),
  };
}

/**
 * The `_meta` member that carries a call's key in the gateway's ledger to the upstream, so an
 * upstream can deduplicate a call and its records can be matched with the ledger's. KS-15.3.10
 */
export const EFFECT_KEY_META = 'dev.killswitch/effect-key';
