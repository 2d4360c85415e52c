import type { KillContext } from '../../model/selector.js';
import { EFFECT_STATUSES, type EffectStatus, type LedgerEvent } from '../side-effect-ledger.js';

/**
 * The hot path of `parseLedgerEvent`: a hand-written check of the common, valid event (the guard
 * appends two or three per effect, and zod cost about 17% of `guard.run` in a CPU profile). It
 * answers the same normalised event as the zod schema does, or undefined when it is not sure, and
 * then the schema decides and lists the issues. It never accepts what the schema refuses:
 * `test/ledger/fast-ledger-event.test.ts` checks both against each other on random input.
 */
export function fastLedgerEvent(input: unknown): LedgerEvent | undefined {
  if (!isPlainObject(input)) return undefined;
  const out: Record<string, unknown> = {};
  for (const k in input) {
    if (!Object.prototype.hasOwnProperty.call(input, k)) return undefined;
    const v = (input as Record<string, unknown>)[k];
    // A strict schema refuses an unknown key even when its value is undefined.
    if (v === undefined) {
      if (EVENT_KEYS.has(k)) continue;
      return undefined;
    }
    switch (k) {
      case 'key':
      case 'runId':
      case 'step':
      case 'capability':
        if (!isName(v)) return undefined;
        out[k] = v;
        break;
      case 'status':
        if (!(statuses ??= new Set(EFFECT_STATUSES)).has(v as EffectStatus)) return undefined;
        out[k] = v;
        break;
      case 'at':
        if (!isInstant(v)) return undefined;
        out[k] = v;
        break;
      case 'context': {
        const c = fastContext(v);
        if (c === undefined) return undefined;
        out[k] = c;
        break;
      }
      case 'flipSeq':
      case 'attempt':
        if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= 1)) return undefined;
        out[k] = v;
        break;
      case 'detail':
        if (typeof v !== 'string' || v.length > 4096) return undefined;
        out[k] = v;
        break;
      case 'compensation': {
        if (!isPlainObject(v)) return undefined;
        const c: Record<string, unknown> = {};
        for (const ck in v) {
          if (!Object.prototype.hasOwnProperty.call(v, ck)) return undefined;
          const cv = (v as Record<string, unknown>)[ck];
          if (ck === 'action') {
            if (!isName(cv)) return undefined;
          } else if (ck !== 'args') return undefined;
          c[ck] = cv;
        }
        if (c['action'] === undefined) return undefined;
        out[k] = c;
        break;
      }
      case 'result':
        out[k] = v;
        break;
      default:
        return undefined;
    }
  }
  if (out['key'] === undefined || out['status'] === undefined || out['at'] === undefined)
    return undefined;
  if (out['context'] === undefined) return undefined;
  return out as unknown as LedgerEvent;
}

/** Built on first use: this module and side-effect-ledger.ts import each other. */
let statuses: ReadonlySet<EffectStatus> | undefined;
const CONTEXT_KEYS = new Set(['tenant', 'feature', 'runId', 'capability']);
const EVENT_KEYS = new Set([
  'key',
  'status',
  'at',
  'runId',
  'step',
  'capability',
  'context',
  'flipSeq',
  'detail',
  'compensation',
  'attempt',
  'result',
]);
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function fastContext(v: unknown): KillContext | undefined {
  if (!isPlainObject(v)) return undefined;
  const out: Record<string, unknown> = {};
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) return undefined;
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined) {
      if (CONTEXT_KEYS.has(k) || k === 'runPath') continue;
      return undefined;
    }
    if (CONTEXT_KEYS.has(k)) {
      if (!isCtxValue(x)) return undefined;
      out[k] = x;
    } else if (k === 'runPath') {
      if (!Array.isArray(x) || x.length < 1 || x.length > 64) return undefined;
      const path: string[] = new Array<string>(x.length);
      for (let i = 0; i < x.length; i++) {
        // A hole or an extra property is left to the schema.
        if (!(i in x) || !isCtxValue(x[i])) return undefined;
        path[i] = x[i] as string;
      }
      if (Object.keys(x).length !== x.length) return undefined;
      out[k] = path;
    } else return undefined;
  }
  return out as KillContext;
}

function isPlainObject(v: unknown): v is object {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function isName(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= 1024;
}

function isCtxValue(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= 256;
}

/** The last instant found valid: the guard stamps every event of one millisecond alike. */
let lastInstant = '';

function isInstant(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  if (v === lastInstant) return true;
  if (!INSTANT.test(v) || Number.isNaN(Date.parse(v))) return false;
  lastInstant = v;
  return true;
}
