import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  OpenFeature,
  ProviderFatalError,
  ProviderStatus,
  type Client,
  type FlagEvaluationOptions,
  type Hook,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { InvalidOptionError } from '../../src/errors.js';
import { evaluateKill } from '../../src/guard/kill-decision.js';
import { KillSwitchHook, evaluateKillFlag, killSwitchClient } from '../../src/hooks/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';

afterEach(async () => {
  await OpenFeature.clearProviders();
  OpenFeature.clearHooks();
});

/** A provider whose initialize and resolver do what the test says. */
class ScriptedProvider implements Provider {
  readonly metadata = { name: 'scripted' };
  readonly runsOn = 'server';
  initialize?: () => Promise<void>;
  constructor(
    readonly resolve: () => Promise<unknown>,
    init?: () => Promise<void>,
  ) {
    if (init) this.initialize = init;
  }
  resolveBooleanEvaluation(): Promise<ResolutionDetails<boolean>> {
    return this.resolve() as Promise<ResolutionDetails<boolean>>;
  }
  async resolveStringEvaluation(): Promise<ResolutionDetails<string>> {
    throw new Error('unused');
  }
  async resolveNumberEvaluation(): Promise<ResolutionDetails<number>> {
    throw new Error('unused');
  }
  async resolveObjectEvaluation<T>(): Promise<ResolutionDetails<T>> {
    throw new Error('unused');
  }
}

const running = async () => ({ value: false, variant: 'running', reason: 'DEFAULT' });
const quiet = { warn: () => {}, error: () => {} };

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A live KillSwitchProvider over an empty log: it answers running (false) when nothing fails. */
async function liveKillSwitch(domain: string): Promise<void> {
  const store = new MemoryFlipLogStore();
  const p = KillSwitchProvider.fromStore(store, { logger: quiet });
  await OpenFeature.setProviderAndWait(domain, p);
  await until(() => p.failure === undefined, 'fresh');
}

interface Path {
  readonly name: string;
  readonly setup: (domain: string) => Promise<void>;
  readonly options?: FlagEvaluationOptions;
  /** Hooks every client of the path carries (a throwing hook an application registered). */
  readonly clientHooks?: Hook[];
  /** What a raw `getBooleanValue('kill-switch', false)` returns: the SDK fact behind the design. */
  readonly raw: unknown;
  /** Whether the hook's finally-stage correction can reach this path. */
  readonly hookCorrects: boolean;
}

const throwingBefore: Hook = {
  before() {
    throw new Error('before hook failed');
  },
};
const throwingAfter: Hook = {
  after() {
    throw new Error('after hook failed');
  },
};

const paths: Path[] = [
  { name: 'no provider bound', setup: async () => {}, raw: false, hookCorrects: true },
  {
    name: 'initialize never resolves (NOT_READY)',
    setup: async (d) => {
      OpenFeature.setProvider(d, new ScriptedProvider(running, () => new Promise<void>(() => {})));
    },
    raw: false,
    hookCorrects: true,
  },
  {
    name: 'initialize rejects with PROVIDER_FATAL (FATAL)',
    setup: async (d) => {
      await OpenFeature.setProviderAndWait(
        d,
        new ScriptedProvider(running, async () => {
          throw new ProviderFatalError('bad credentials');
        }),
      ).catch(() => {});
      expect(OpenFeature.getClient(d).providerStatus).toBe(ProviderStatus.FATAL);
    },
    raw: false,
    hookCorrects: true,
  },
  {
    name: 'initialize rejects (ERROR), resolver still answers false',
    setup: async (d) => {
      await OpenFeature.setProviderAndWait(
        d,
        new ScriptedProvider(running, async () => {
          throw new Error('stream down');
        }),
      ).catch(() => {});
      expect(OpenFeature.getClient(d).providerStatus).toBe(ProviderStatus.ERROR);
    },
    raw: false,
    // A hook sees no provider status: only evaluateKillFlag can refuse this answer.
    hookCorrects: false,
  },
  {
    name: 'a before hook throws',
    setup: liveKillSwitch,
    clientHooks: [throwingBefore],
    raw: false,
    hookCorrects: true,
  },
  {
    name: 'an after hook throws',
    setup: liveKillSwitch,
    clientHooks: [throwingAfter],
    raw: false,
    hookCorrects: true,
  },
  {
    name: 'the resolver throws',
    setup: async (d) => {
      await OpenFeature.setProviderAndWait(
        d,
        new ScriptedProvider(async () => {
          throw new Error('resolver exploded');
        }),
      );
    },
    raw: false,
    hookCorrects: true,
  },
  {
    name: 'the resolver returns a string',
    setup: async (d) => {
      await OpenFeature.setProviderAndWait(d, new ScriptedProvider(async () => ({ value: 'no' })));
    },
    raw: 'no',
    hookCorrects: true,
  },
  {
    name: 'the resolver returns an undefined value',
    setup: async (d) => {
      await OpenFeature.setProviderAndWait(
        d,
        new ScriptedProvider(async () => ({ value: undefined })),
      );
    },
    raw: undefined,
    hookCorrects: true,
  },
  {
    name: 'the resolver returns undefined',
    setup: async (d) => {
      await OpenFeature.setProviderAndWait(d, new ScriptedProvider(async () => undefined));
    },
    raw: false, // the SDK throws reading undefined.flagMetadata, then returns the default
    hookCorrects: true,
  },
];

let seq = 0;
const ctx = { tenant: 'acme', runId: 'r1' };

describe('KS-3.6.1 KS-3.6.2 every abnormal SDK path answers halted through the library evaluation path; KS-3.6.5 the hook corrects it where SDK 1.23 lets it', () => {
  it.each(paths)('$name', async (path) => {
    const domain = `hooks-path-${++seq}`;
    await path.setup(domain);
    const client = OpenFeature.getClient(domain).addHooks(...(path.clientHooks ?? []));
    const opts = path.options;

    // The SDK fact: a caller's default comes back on this path (with false, it fails open).
    expect(await client.getBooleanValue('kill-switch', false, ctx, opts)).toBe(path.raw);

    // The library's way: default true, and anything but a clean false from a READY provider is halted.
    const d = await evaluateKillFlag(client, 'kill-switch', ctx, opts);
    expect(d.value).toBe(true);
    expect(d.variant).toBe('fail-closed');
    expect(['ERROR', 'STALE']).toContain(d.reason);
    expect(await killSwitchClient(client).getBooleanValue('kill-switch', false, ctx, opts)).toBe(
      true,
    );
    expect(
      (await killSwitchClient(client).getBooleanDetails('kill-switch.tenant', false, ctx, opts))
        .value,
    ).toBe(true);
    if (path.hookCorrects) {
      // The guard's evaluation (default true) is halted on every path the SDK itself turns into the default.
      expect((await evaluateKill(client, ctx)).halted).toBe(true);
    }

    // The hook: warns about the default false, logs the failure, and (SDK 1.23) corrects the value.
    const warnings: string[] = [];
    const hooked = OpenFeature.getClient(domain).addHooks(
      new KillSwitchHook({ logger: { warn: (m) => warnings.push(m) } }),
      ...(path.clientHooks ?? []),
    );
    const v = await hooked.getBooleanValue('kill-switch', false, ctx, opts);
    expect(v).toBe(path.hookCorrects ? true : false);
    expect(warnings.some((w) => w.includes('evaluated with default false'))).toBe(true);
    if (path.hookCorrects) {
      expect(warnings.some((w) => /evaluation of kill flag kill-switch failed/.test(w))).toBe(true);
    }
  });
});

describe('KS-3.6.3 without the correction a hook cannot change what the SDK returns', () => {
  it('with correct: false the caller gets its default false on an abnormal path, and the hook says FAILED OPEN', async () => {
    const warnings: string[] = [];
    const client = OpenFeature.getClient('hooks-no-correct').addHooks(
      new KillSwitchHook({ correct: false, logger: { warn: (m) => warnings.push(m) } }),
    );
    expect(await client.getBooleanValue('kill-switch', false, ctx)).toBe(false);
    expect(warnings.some((w) => w.includes('FAILED OPEN'))).toBe(true);
  });
});

describe('KS-3.6.4 the hook warns once per flag and call site when the default is not true', () => {
  it('warns once per call site, names the site, ignores default true and other flags', async () => {
    await liveKillSwitch('hooks-warn');
    const warnings: string[] = [];
    const client = OpenFeature.getClient('hooks-warn').addHooks(
      new KillSwitchHook({ logger: { warn: (m) => warnings.push(m) } }),
    );
    for (let i = 0; i < 3; i++)
      expect(await client.getBooleanValue('kill-switch', false, ctx)).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('kill-switch-hook.test.ts');
    await client.getBooleanValue('kill-switch', false, ctx); // another line: another site
    expect(warnings).toHaveLength(2);
    await client.getBooleanValue('kill-switch.run', false, ctx);
    expect(warnings).toHaveLength(3);
    await client.getBooleanValue('kill-switch', true, ctx);
    await client.getBooleanValue('some-other-flag', false, ctx);
    expect(warnings).toHaveLength(3);
  });

  it('logs a failing kill flag once per outage and says when it recovers', async () => {
    const warnings: string[] = [];
    let fail = true;
    await OpenFeature.setProviderAndWait(
      'hooks-outage',
      new ScriptedProvider(async () => {
        if (fail) throw new Error('backend down');
        return { value: false, reason: 'DEFAULT' };
      }),
    );
    const client = OpenFeature.getClient('hooks-outage').addHooks(
      new KillSwitchHook({ logger: { warn: (m) => warnings.push(m) } }),
    );
    for (let i = 0; i < 5; i++)
      expect(await client.getBooleanValue('kill-switch', true, ctx)).toBe(true);
    expect(warnings.filter((w) => w.includes('failed'))).toEqual([
      'evaluation of kill flag kill-switch failed (backend down); the answer failed closed (halted)',
    ]);
    fail = false;
    expect(await client.getBooleanValue('kill-switch', true, ctx)).toBe(false);
    expect(warnings.at(-1)).toBe('kill flag kill-switch evaluates normally again');
  });

  it('turns a non-boolean kill flag value into TYPE_MISMATCH', async () => {
    await OpenFeature.setProviderAndWait(
      'hooks-type',
      new ScriptedProvider(async () => ({ value: 'yes' })),
    );
    const client = OpenFeature.getClient('hooks-type').addHooks(
      new KillSwitchHook({ logger: quiet }),
    );
    const d = await client.getBooleanDetails('kill-switch', true, ctx);
    expect(d).toMatchObject({ value: true, errorCode: 'TYPE_MISMATCH' });
  });

  it('refuses bad options at construction', () => {
    expect(() => new KillSwitchHook({ logger: {} as never })).toThrow(InvalidOptionError);
    expect(() => new KillSwitchHook({ maxCallSites: 0 })).toThrow(/option maxCallSites/);
    expectTypeOf(new KillSwitchHook()).toMatchTypeOf<Hook>();
  });
});

describe('KS-3.6.2 killSwitchClient passes other flags and methods through', () => {
  it('answers other flags with the caller default and keeps fluent calls on the wrapper', async () => {
    const client: Client = killSwitchClient(OpenFeature.getClient('hooks-wrapper'));
    expect(await client.getBooleanValue('some-other-flag', false)).toBe(false);
    expect(client.addHooks()).toBe(client);
    expect(client.metadata.domain).toBe('hooks-wrapper');
  });
});
