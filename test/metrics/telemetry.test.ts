import { AsyncLocalStorage } from 'node:async_hooks';
import { OpenFeature } from '@openfeature/server-sdk';
import {
  context,
  ProxyTracer,
  ROOT_CONTEXT,
  trace,
  type Attributes,
  type Context,
  type ContextManager,
  type Span,
  type SpanContext,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryFlipLogStore } from '../../providers/memory/index.js';
import { ErrorCode } from '../../src/errors.js';
import { EffectGuard } from '../../src/guard/effect-guard.js';
import { MemorySideEffectLedger } from '../../src/ledger/index.js';
import { KillSwitchProvider } from '../../src/provider/index.js';
import {
  FeatureFlagSpanHook,
  GuardSpanEvent,
  loadOpenTelemetryApi,
  traceGuard,
} from '../../src/telemetry/index.js';

// No OpenTelemetry SDK is installed: a small, real TracerProvider and an AsyncLocalStorage context
// manager, registered globally, stand in for it. The code under test sees them only through
// @opentelemetry/api (ProxyTracer delegation and the global context).

interface RecordedEvent {
  readonly name: string;
  readonly attributes: Attributes | undefined;
}

class RecordingSpan implements Span {
  readonly events: RecordedEvent[] = [];
  ended = false;
  readonly #ctx: SpanContext;
  constructor(
    readonly name: string,
    n: number,
  ) {
    this.#ctx = {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: n.toString(16).padStart(16, '0'),
      traceFlags: 1,
    };
  }
  spanContext(): SpanContext {
    return this.#ctx;
  }
  setAttribute(): this {
    return this;
  }
  setAttributes(): this {
    return this;
  }
  addEvent(name: string, attributes?: Attributes): this {
    this.events.push({ name, attributes });
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(): this {
    return this;
  }
  updateName(): this {
    return this;
  }
  end(): void {
    this.ended = true;
  }
  isRecording(): boolean {
    return !this.ended;
  }
  recordException(): void {}
}

class RecordingTracer implements Tracer {
  readonly spans: RecordingSpan[] = [];
  startSpan(name: string): Span {
    const s = new RecordingSpan(name, this.spans.length + 1);
    this.spans.push(s);
    return s;
  }
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    ...args: unknown[]
  ): ReturnType<F> {
    const fn = args[args.length - 1] as (span: Span) => ReturnType<F>;
    const span = this.startSpan(name);
    return context.with(trace.setSpan(context.active(), span), fn, undefined, span);
  }
}

class RecordingProvider implements TracerProvider {
  readonly tracer = new RecordingTracer();
  getTracer(): Tracer {
    return this.tracer;
  }
}

class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#als.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#als.disable();
    return this;
  }
}

const provider = new RecordingProvider();
let tracer: Tracer;
let store: MemoryFlipLogStore;
let domainN = 0;

beforeAll(() => {
  // Taken before the provider is registered: a ProxyTracer that delegates once it is.
  tracer = trace.getTracer('kill-switch-test');
  expect(context.setGlobalContextManager(new AlsContextManager())).toBe(true);
  expect(trace.setGlobalTracerProvider(provider)).toBe(true);
});

afterAll(async () => {
  trace.disable();
  context.disable();
  await OpenFeature.close();
});

afterEach(() => {
  provider.tracer.spans.length = 0;
});

async function clientWithHalt(): Promise<ReturnType<typeof OpenFeature.getClient>> {
  store = new MemoryFlipLogStore();
  await store.open();
  await store.append({
    id: 'halt-acme',
    actor: 'ada',
    action: 'halt',
    selector: { tenant: 'acme' },
    reason: 'incident 7',
  });
  const domain = `telemetry-${process.pid}-${++domainN}`;
  await OpenFeature.setProviderAndWait(domain, KillSwitchProvider.fromStore(store));
  return OpenFeature.getClient(domain);
}

describe('KS-11.3.1 @opentelemetry/api is optional and loaded lazily', () => {
  it('is found when installed, and the tracer the test uses is the API ProxyTracer', () => {
    expect(loadOpenTelemetryApi()?.trace.getActiveSpan).toBeTypeOf('function');
    expect(tracer).toBeInstanceOf(ProxyTracer);
  });

  it('refuses an api option that is not the OpenTelemetry API', () => {
    expect(() => new FeatureFlagSpanHook({ api: {} as never })).toThrow(/api/);
  });
});

describe('KS-11.3.2 the hook records feature_flag.evaluation events with the semantic-convention attributes', () => {
  it('records key, provider name, variant, reason, value, context id and the flip on the active span', async () => {
    const client = await clientWithHalt();
    client.addHooks(new FeatureFlagSpanHook());
    const details = await tracer.startActiveSpan('handle-request', async (span) => {
      const d = await client.getBooleanDetails('kill-switch', true, {
        tenant: 'acme',
        runId: 'run-9',
      });
      await client.getBooleanDetails('some-product-flag', false, { runId: 'run-9' });
      span.end();
      return d;
    });
    expect(details.value).toBe(true);
    const [span] = provider.tracer.spans;
    expect(span!.events).toEqual([
      {
        name: 'feature_flag.evaluation',
        attributes: expect.objectContaining({
          'feature_flag.key': 'kill-switch',
          'feature_flag.provider.name': client.metadata.providerMetadata.name,
          'feature_flag.result.reason': details.reason!.toLowerCase(),
          'feature_flag.result.value': true,
          'feature_flag.context.id': 'run-9',
          'killswitch.flip.seq': 1,
          'killswitch.flip.id': 'halt-acme',
          'killswitch.level': 'tenant',
          ...(details.variant === undefined
            ? {}
            : { 'feature_flag.result.variant': details.variant }),
        }),
      },
    ]);
  });

  it('records nothing without an active span, and never throws', async () => {
    const client = await clientWithHalt();
    client.addHooks(new FeatureFlagSpanHook());
    const d = await client.getBooleanDetails('kill-switch', true, { tenant: 'acme' });
    expect(d.value).toBe(true);
    expect(provider.tracer.spans).toHaveLength(0);
  });
});

describe('KS-11.3.3 refused and aborted effects are span events on the span active at the call', () => {
  it('a refusal adds killswitch.effect.refused naming the flip; an abort triggered from outside the span lands on it too', async () => {
    const client = await clientWithHalt();
    const guard = new EffectGuard({
      client,
      ledger: new MemorySideEffectLedger(),
      logger: { warn: () => {} },
    });
    const traced = traceGuard(guard);

    const refused = await tracer.startActiveSpan('refused-request', async (span) => {
      const e = await traced
        .run(
          { context: { tenant: 'acme' }, runId: 'r1', step: 's1', capability: 'email.send' },
          async () => 1,
        )
        .catch((x: unknown) => x);
      span.end();
      return e;
    });
    expect(refused).toMatchObject({ code: ErrorCode.HALTED });

    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const inflight = tracer.startActiveSpan('aborted-request', async (span) => {
      const e = await traced
        .run(
          { context: { tenant: 'globex' }, runId: 'r2', step: 's1', capability: 'payments.refund' },
          (signal) =>
            new Promise((_, reject) => {
              started();
              signal.addEventListener('abort', () => reject(signal.reason));
            }),
        )
        .catch((x: unknown) => x);
      span.end();
      return e;
    });
    await running;
    // The halt arrives from outside any span (as a stream event would).
    await context.with(ROOT_CONTEXT, () =>
      store.append({
        id: 'halt-globex',
        actor: 'ada',
        action: 'halt',
        selector: { tenant: 'globex' },
        reason: 'stop',
      }),
    );
    expect(await inflight).toMatchObject({ code: ErrorCode.ABORTED });

    const [a, b] = provider.tracer.spans;
    expect(a!.events).toEqual([
      {
        name: GuardSpanEvent.REFUSED,
        attributes: {
          'killswitch.effect.key': expect.any(String),
          'killswitch.run_id': 'r1',
          'killswitch.step': 's1',
          'killswitch.capability': 'email.send',
          'killswitch.tenant': 'acme',
          'killswitch.cause': 'halted',
          'killswitch.flip.seq': 1,
          'killswitch.flip.id': 'halt-acme',
          'error.type': 'KS_HALTED',
        },
      },
    ]);
    expect(b!.events).toEqual([
      {
        name: GuardSpanEvent.ABORTED,
        attributes: expect.objectContaining({
          'killswitch.run_id': 'r2',
          'killswitch.capability': 'payments.refund',
          'killswitch.flip.id': 'halt-globex',
          'error.type': 'KS_ABORTED',
        }),
      },
    ]);
    await guard.close();
  });

  it('an effect that lands adds no event', async () => {
    const client = await clientWithHalt();
    const guard = new EffectGuard({
      client,
      ledger: new MemorySideEffectLedger(),
      logger: { warn: () => {} },
    });
    const out = await tracer.startActiveSpan('ok', async (span) => {
      const v = await traceGuard(guard).run(
        { context: { tenant: 'other' }, runId: 'r3', step: 's1', capability: 'email.send' },
        async () => 42,
      );
      span.end();
      return v;
    });
    expect(out).toBe(42);
    expect(provider.tracer.spans[0]!.events).toEqual([]);
    await guard.close();
  });
});
