import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { ErrorCode, ValidationError } from '../../src/errors.js';
import { KILL_FLAG_KEYS, LEVEL_FLAGS, levelOfFlag } from '../../src/model/flags.js';
import { KillState } from '../../src/model/kill-state.js';
import {
  LEVELS,
  SELECTOR_KEYS,
  levelOf,
  parseSelector,
  selectorMatches,
  type KillContext,
  type Selector,
} from '../../src/model/selector.js';

/** The issues a refused selector lists. */
function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseSelector(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).code).toBe(ErrorCode.INVALID_INPUT);
    return (e as ValidationError).issues.map((i) => ({
      path: i.path.join('.'),
      message: i.message,
    }));
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

describe('KS-1.1.1 a selector names only tenant, feature, runId and capability', () => {
  it('the four attributes, in canonical order, and nothing else', () => {
    expect([...SELECTOR_KEYS]).toEqual(['tenant', 'feature', 'runId', 'capability']);
    const s = parseSelector({ capability: 'c', runId: 'r', feature: 'f', tenant: 't' });
    expect(Object.keys(s)).toEqual(['tenant', 'feature', 'runId', 'capability']);
    expect(Object.isFrozen(s)).toBe(true);
  });
});

describe('KS-1.1.2 a bad selector is refused with KS_INVALID_INPUT listing every issue', () => {
  it('unknown keys, empty values, surrounding white space, control characters, non-strings: all at once', () => {
    const issues = issuesOf({
      tenant: '',
      feature: ' padded ',
      runId: 'a\u0007b',
      capability: 42,
      team: 'x',
    });
    const paths = issues.map((i) => i.path);
    for (const p of ['tenant', 'feature', 'runId', 'capability']) expect(paths).toContain(p);
    // the unknown key is named too
    expect(issues.some((i) => i.message.includes('team') || i.path === 'team')).toBe(true);
    expect(issues.length).toBeGreaterThanOrEqual(5);
  });

  it('refuses what is not an object, and values over 256 characters', () => {
    for (const bad of [null, 'tenant=acme', ['acme'], 7])
      expect(() => parseSelector(bad)).toThrow(ValidationError);
    expect(issuesOf({ tenant: 'x'.repeat(257) })[0]!.path).toBe('tenant');
    expect(parseSelector({ tenant: 'x'.repeat(256) }).tenant).toHaveLength(256);
  });
});

const value = fc.constantFrom('a', 'b');
const arbSelector: fc.Arbitrary<Selector> = fc
  .record({ tenant: value, feature: value, runId: value, capability: value }, { requiredKeys: [] })
  .map((s) => parseSelector(s));

describe('KS-1.1.3 a selector matches when every attribute it names is equal; {} matches everything', () => {
  it('holds for every selector and context over a small alphabet', () => {
    fc.assert(
      fc.property(arbSelector, arbSelector, (sel, ctx: KillContext) => {
        const expected = SELECTOR_KEYS.every((k) => sel[k] === undefined || sel[k] === ctx[k]);
        expect(selectorMatches(sel, ctx)).toBe(expected);
        expect(selectorMatches({}, ctx)).toBe(true);
      }),
    );
  });

  it('an attribute the context lacks does not match a selector naming it (case counts)', () => {
    expect(selectorMatches({ tenant: 'acme' }, { feature: 'x' })).toBe(false);
    expect(selectorMatches({ tenant: 'acme' }, { tenant: 'ACME' })).toBe(false);
    expect(selectorMatches({ tenant: 'acme', feature: 'x' }, { tenant: 'acme' })).toBe(false);
  });
});

describe('KS-1.2.1 four buttons, each with its own flag', () => {
  it('capability, run, tenant or feature, global: kill-switch and one flag per level', () => {
    expect([...LEVELS]).toEqual(['capability', 'run', 'tenant', 'feature', 'global']);
    expect(LEVEL_FLAGS).toEqual({
      global: 'kill-switch.global',
      tenant: 'kill-switch.tenant',
      feature: 'kill-switch.feature',
      run: 'kill-switch.run',
      capability: 'kill-switch.capability',
    });
    expect([...KILL_FLAG_KEYS].sort()).toEqual(
      ['kill-switch', ...Object.values(LEVEL_FLAGS)].sort(),
    );
    for (const l of LEVELS) expect(levelOfFlag(LEVEL_FLAGS[l])).toBe(l);
    expect(levelOfFlag('kill-switch')).toBe('any');
    expect(levelOfFlag('kill-switch.tenants')).toBeUndefined();
  });

  it("a level flag answers only its own level's halts", async () => {
    const store = new MemoryFlipLogStore();
    await store.append({ action: 'halt', selector: { tenant: 'acme' }, actor: 't', reason: 'r' });
    const state = KillState.fold(await store.read());
    const ctx = { tenant: 'acme', feature: 'f', runId: 'r1', capability: 'c' };
    expect(state.match(ctx)?.seq).toBe(1);
    expect(state.match(ctx, 'tenant')?.seq).toBe(1);
    for (const l of ['capability', 'run', 'feature', 'global'] as const)
      expect(state.match(ctx, l)).toBeUndefined();
  });
});

describe('KS-1.2.2 the level of a selector: capability, then run, then tenant, then feature; {} is global', () => {
  it('follows the precedence for every combination of attributes', () => {
    fc.assert(
      fc.property(arbSelector, (s) => {
        const expected =
          s.capability !== undefined
            ? 'capability'
            : s.runId !== undefined
              ? 'run'
              : s.tenant !== undefined
                ? 'tenant'
                : s.feature !== undefined
                  ? 'feature'
                  : 'global';
        expect(levelOf(s)).toBe(expected);
      }),
    );
    expect(levelOf({ tenant: 'acme', capability: 'payments.refund' })).toBe('capability');
    expect(levelOf({ tenant: 'acme', feature: 'x' })).toBe('tenant');
    expect(levelOf({})).toBe('global');
  });
});

describe('KS-1.3.3 a halt on a selector already halted replaces the active record', () => {
  it('the newest reason and mode are reported, and one resume lifts it', async () => {
    const store = new MemoryFlipLogStore();
    const sel = { tenant: 'acme' };
    await store.append({
      action: 'halt',
      selector: sel,
      actor: 't',
      reason: 'first',
      mode: 'hold',
    });
    await store.append({
      action: 'halt',
      selector: sel,
      actor: 't',
      reason: 'second',
      mode: 'drain',
    });
    let state = KillState.fold(await store.read());
    expect(state.size).toBe(1);
    const hit = state.match({ tenant: 'acme' })!;
    expect([hit.seq, hit.reason, hit.mode]).toEqual([2, 'second', 'drain']);
    await store.append({ action: 'resume', selector: sel, actor: 't', reason: 'fixed' });
    state = KillState.fold(await store.read());
    expect(state.size).toBe(0);
    expect(state.match({ tenant: 'acme' })).toBeUndefined();
  });
});
