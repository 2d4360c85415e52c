import { performance } from 'node:perf_hooks';
import { Annotation, END, MemorySaver, START, Send, StateGraph } from '@langchain/langgraph';
import { createAgent, tool } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { killSwitch } from '../../../src/adapters/langgraph/index.js';
import { HaltedError } from '../../../src/errors.js';
import { effectKey } from '../../../src/ledger/index.js';
import { childRunId, runInScope } from '../../../src/scope/index.js';
import {
  callWithLineage,
  deferred,
  killSwitchEnvPerTest,
  lineageEndpoint,
  sleep,
  toolEveryTurn,
} from '../harness.js';
import { ScriptedChatModel, type Turn } from './scripted-chat-model.js';

const env = killSwitchEnvPerTest();

const schema = z.object({ amount: z.number() });
const input = { messages: [{ role: 'user', content: 'go' }] };
const thread = (id: string) => ({ configurable: { thread_id: id } });

describe('KS-14.5 the LangGraph / langchain adapter (createAgent, scripted chat model)', () => {
  // KS-14.5.1 the middleware runs each tool call as a guarded effect through wrapToolCall, keyed by
  // the thread id; a refusal ends the graph run (the control below: fed back without it).
  describe('KS-14.1.2 KS-14.5.1 a halted capability refuses the tool and stops the run', () => {
    it('rejects with the HaltedError naming the flip after no further model call; the tool never ran', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'refund' }, 'refunds frozen');
      const model = new ScriptedChatModel(toolEveryTurn('refund'));
      let ran = 0;
      const refund = tool(async () => ++ran, { name: 'refund', description: 'refund', schema });
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const agent = createAgent({ model, tools: [refund], middleware: [ks.middleware] });
      const err = await ks.invoke(agent, input, thread('run-cap')).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq, reason: 'refunds frozen' } });
      expect(ran).toBe(0);
      expect(model.calls).toBe(1);
      const [entry] = await e.ledger.entries();
      expect(entry).toMatchObject({ key: effectKey('run-cap', 'call-0'), status: 'refused' });
    });

    it('the middleware alone (agent.invoke, no ks.invoke) also ends the run with the HaltedError', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      const model = new ScriptedChatModel(toolEveryTurn('refund'));
      const refund = tool(async () => 1, { name: 'refund', description: 'refund', schema });
      const ks = killSwitch(e.guard);
      const agent = createAgent({ model, tools: [refund], middleware: [ks.middleware] });
      // LangGraph rethrows a copy of a middleware's error (same name and message, not our object);
      // ks.invoke returns the HaltedError itself, read from the run's own signal.
      const err = (await agent
        .invoke(input, thread('run-direct'))
        .catch((x: unknown) => x)) as Error;
      expect(err).toMatchObject({ name: 'HaltedError' });
      expect(err.message).toMatch(/refused: halted by flip #1/);
      expect(model.calls).toBe(1);
    });

    it('(control) the same halt through a bare guard.run inside the tool is fed back as "Please fix your mistakes"', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      const model = new ScriptedChatModel(toolEveryTurn('refund'));
      const refund = tool(
        async (_i, config) =>
          e.guard.run(
            { context: {}, runId: 'bare', step: String(config.toolCall?.id), capability: 'refund' },
            async () => 1,
          ),
        { name: 'refund', description: 'refund', schema },
      );
      const agent = createAgent({ model, tools: [refund] });
      const result = await agent.invoke(input, thread('bare'));
      expect(model.calls).toBe(5);
      expect(JSON.stringify(result.messages)).toContain('fix your mistakes');
    });

    it('KS-14.5.1 refuses to guess a run: no thread id fails the run before any effect', async () => {
      const e = await env();
      const model = new ScriptedChatModel(toolEveryTurn('refund'));
      let ran = 0;
      const refund = tool(async () => ++ran, { name: 'refund', description: 'refund', schema });
      const ks = killSwitch(e.guard);
      const agent = createAgent({ model, tools: [refund], middleware: [ks.middleware] });
      const err = (await agent.invoke(input).catch((x: unknown) => x)) as Error;
      expect(err.message).toMatch(/configurable\.thread_id/);
      await expect(ks.invoke(agent, input, {})).rejects.toMatchObject({ code: 'KS_INVALID_INPUT' });
      expect(ran).toBe(0);
    });
  });

  describe('KS-14.1.3 KS-14.5.1 a halt arriving mid-tool aborts the tool at once and frees the caller', () => {
    it("aborts the tool's signal (the guard's, merged into its config) within the turn that delivered the flip; the caller is freed though the tool ignores it", async () => {
      const e = await env();
      const model = new ScriptedChatModel(toolEveryTurn('slow'));
      const started = deferred();
      let abortedAt = 0;
      let turned = true;
      let finished = false;
      const slow = tool(
        async (_i, config) => {
          config.signal!.addEventListener('abort', () => {
            abortedAt = performance.now();
            turned = e.turnedSinceArrival();
          });
          started.resolve();
          await sleep(1500); // ignores its signal on purpose
          finished = true;
          return 'late';
        },
        { name: 'slow', description: 'slow', schema },
      );
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const agent = createAgent({ model, tools: [slow], middleware: [ks.middleware] });
      const p = ks.invoke(agent, input, thread('run-mid')).catch((x: unknown) => x);
      await started.promise;
      const { arrivedAt, seq } = await e.halt({ tenant: 'acme' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
      expect(turned).toBe(false);
      expect(abortedAt).toBeGreaterThanOrEqual(arrivedAt);
      expect(performance.now() - arrivedAt).toBeLessThan(1000);
      expect(finished).toBe(false);
      expect(model.calls).toBe(1);
      expect((await e.ledger.entries())[0]?.status).toBe('aborted');
    });
  });

  describe('KS-14.1.4 a halt during a streamed model response ends the stream and the run', () => {
    it('the message stream ends with the HaltedError; the model call is aborted', async () => {
      const e = await env();
      const tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
      const model = new ScriptedChatModel(() => ({ text: tokens, tokenMs: 10 }));
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const agent = createAgent({ model, tools: [], middleware: [ks.middleware] });
      let seen = 0;
      const consumed = (async () => {
        for await (const _chunk of ks.stream(agent, input, {
          ...thread('run-stream'),
          streamMode: 'messages',
        }))
          seen++;
      })().catch((x: unknown) => x);
      while (seen < 3) await sleep(5);
      const tokensBefore = model.tokens;
      const { seq } = await e.halt({ runId: 'run-stream' });
      const err = await consumed;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      expect(seen).toBeLessThan(tokens.length);
      await sleep(30);
      expect(model.aborts).toHaveLength(1);
      expect(model.tokens - tokensBefore).toBeLessThanOrEqual(1);
    });

    it('KS-14.5.2 a model capability halt refuses the next model call (wrapModelCall evaluates first)', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'llm' });
      const model = new ScriptedChatModel(() => ({ text: ['x'] }));
      const ks = killSwitch(e.guard);
      const agent = createAgent({ model, tools: [], middleware: [ks.middleware] });
      await expect(ks.invoke(agent, input, thread('run-llm'))).rejects.toMatchObject({
        code: 'KS_HALTED',
        flip: { seq },
      });
      expect(model.calls).toBe(0);
    });
  });

  // KS-14.5.3 ks.invoke settles by the run's signal (the caller gets the HaltedError itself, not
  // LangGraph's copy), and a resumed thread (invoke(null, config)) is evaluated before its first effect.
  describe('KS-14.5.2 KS-14.5.3 a halt during a model call frees the caller', () => {
    it('ks.invoke rejects with the HaltedError itself while a model call that ignores its signal is still running', async () => {
      const e = await env();
      const started = deferred();
      let finished = false;
      const model = new ScriptedChatModel(
        () => ({ text: ['late'] }),
        async () => {
          started.resolve();
          await sleep(1500); // ignores its signal on purpose
          finished = true;
        },
      );
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const agent = createAgent({ model, tools: [], middleware: [ks.middleware] });
      const p = ks.invoke(agent, input, thread('run-model')).catch((x: unknown) => x);
      await started.promise;
      const { arrivedAt, seq } = await e.halt({ tenant: 'acme' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      expect(performance.now() - arrivedAt).toBeLessThan(1000);
      expect(finished).toBe(false);
    });
  });

  describe('KS-14.1.5 KS-14.5.3 the thread is the run: keys by thread and tool-call id; a resumed thread repeats no effect', () => {
    it('a thread halted mid-way and resumed after the resume runs each tool once; while halted the resume is refused before its first effect', async () => {
      const e = await env();
      const sent: string[] = [];
      const email = tool(
        async ({ amount }, config) => {
          sent.push(String(config.toolCall?.id));
          return `sent ${amount}`;
        },
        { name: 'email', description: 'send', schema },
      );
      // The halt arrives while the second model call is in flight (after call-0 landed).
      let halted = false;
      // Calls: call-0; then call-1 (cut by the halt); then call-1 again after the resume; then done.
      const script = (n: number): Turn =>
        n === 0
          ? { toolCalls: [{ id: 'call-0', name: 'email', input: { amount: 10 } }] }
          : n <= 2
            ? { toolCalls: [{ id: 'call-1', name: 'email', input: { amount: 11 } }] }
            : { text: ['done'] };
      const model = new ScriptedChatModel(script, async (n, signal) => {
        if (n !== 1 || halted) return;
        halted = true;
        await e.halt({ runId: 'run-r' });
        await sleep(5000, signal).catch(() => undefined);
      });
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const agent = createAgent({
        model,
        tools: [email],
        middleware: [ks.middleware],
        checkpointer: new MemorySaver(),
      });
      const first = await ks.invoke(agent, input, thread('run-r')).catch((x: unknown) => x);
      expect(first).toMatchObject({ name: 'HaltedError', code: 'KS_ABORTED' });
      expect(sent).toEqual(['call-0']);
      const calls = model.calls;
      // Resuming the thread while the halt stands: refused before its first effect (the model call).
      await expect(ks.invoke(agent, null, thread('run-r'))).rejects.toMatchObject({
        code: 'KS_HALTED',
      });
      expect(model.calls).toBe(calls);
      // After the resume flip the thread continues from its checkpoint: call-0 never runs again.
      await e.resume({ runId: 'run-r' });
      const done = await ks.invoke(agent, null, thread('run-r'));
      expect(sent).toEqual(['call-0', 'call-1']);
      expect(done.messages.at(-1)?.content).toBe('done');
      const entries = await e.ledger.entries({ runId: 'run-r' });
      expect(entries.map((x) => [x.key, x.history.map((h) => h.status)])).toEqual([
        [effectKey('run-r', 'call-0'), ['intent', 'landed']],
        [effectKey('run-r', 'call-1'), ['intent', 'landed']],
      ]);
    });

    it('KS-14.5.1 a thread that re-runs a landed tool call gets the recorded ToolMessage back', async () => {
      const e = await env();
      let sent = 0;
      const email = tool(async ({ amount }) => `sent ${amount} (#${++sent})`, {
        name: 'email',
        description: 'send',
        schema,
      });
      const ks = killSwitch(e.guard);
      const agentWith = () =>
        createAgent({
          model: new ScriptedChatModel(toolEveryTurn('email', 1)),
          tools: [email],
          middleware: [ks.middleware],
        });
      const a = await ks.invoke(agentWith(), input, thread('run-replay'));
      const b = await ks.invoke(agentWith(), input, thread('run-replay'));
      expect(sent).toBe(1);
      const toolText = (r: typeof a) =>
        r.messages.filter((m) => m.getType() === 'tool').map((m) => m.content);
      expect(toolText(b)).toEqual(toolText(a));
      expect(toolText(a)).toEqual(['sent 10 (#1)']);
    });
  });

  describe("KS-14.1.7 an unrelated tenant's run keeps going", () => {
    it('halting tenant acme stops its thread while tenant globex completes every step', async () => {
      const e = await env();
      const gate = deferred();
      const landed: string[] = [];
      const work = tool(
        async (_i, config) => {
          const id = String(config.toolCall?.id);
          if (id === 'call-1') await gate.promise;
          config.signal?.throwIfAborted();
          landed.push(`${(config.context as { tenant: string }).tenant}/${id}`);
          return 'ok';
        },
        { name: 'work', description: 'work', schema },
      );
      const ks = killSwitch(e.guard, {
        context: (c) => ({ tenant: (c as { tenant: string }).tenant }),
      });
      const agentFor = () =>
        createAgent({
          model: new ScriptedChatModel(toolEveryTurn('work', 3)),
          tools: [work],
          middleware: [ks.middleware],
        });
      const acme = ks
        .invoke(agentFor(), input, { ...thread('run-a'), context: { tenant: 'acme' } })
        .catch((x: unknown) => x);
      const globex = ks.invoke(agentFor(), input, {
        ...thread('run-g'),
        context: { tenant: 'globex' },
      });
      while (landed.length < 2) await sleep(2);
      await e.halt({ tenant: 'acme' });
      await sleep(20);
      gate.resolve();
      expect(await acme).toBeInstanceOf(HaltedError);
      expect((await globex).messages.at(-1)?.content).toBe('done');
      expect(landed.filter((l) => l.startsWith('globex/'))).toEqual([
        'globex/call-0',
        'globex/call-1',
        'globex/call-2',
      ]);
      expect(landed.filter((l) => l.startsWith('acme/'))).toEqual(['acme/call-0']);
    });
  });
  describe('KS-14.1.6 / KS-14.5.4 Send fan-out tasks and subgraphs are child runs', () => {
    const State = Annotation.Root({
      topic: Annotation<string>(),
      done: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
    });

    it('each Send task runs as a child of the thread; halting the thread aborts them all, and a resume under the halt is refused before its first effect', async () => {
      const e = await env();
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      let started = 0;
      const bothStarted = deferred();
      const signals: AbortSignal[] = [];
      const graph = new StateGraph(State)
        .addNode('fan', async () => ({}))
        .addNode(
          'worker',
          ks.node(async (state: typeof State.State, config: { signal?: AbortSignal }) => {
            // No run id: the effect belongs to the task's child run through the run scope.
            const out = await e.guard.run(
              { step: `fetch-${state.topic}`, capability: 'web.fetch' },
              async (signal) => {
                signals.push(signal);
                if (++started === 2) bothStarted.resolve();
                await sleep(1500, signal);
                return state.topic;
              },
            );
            expect(config.signal).toBeInstanceOf(AbortSignal);
            return { done: [out] };
          }),
        )
        .addEdge(START, 'fan')
        .addConditionalEdges('fan', () => ['a', 'b'].map((t) => new Send('worker', { topic: t })))
        .addEdge('worker', END)
        .compile({ checkpointer: new MemorySaver() });
      const p = ks.invoke(graph, { done: [] }, thread('run-fan')).catch((x: unknown) => x);
      await bothStarted.promise;
      const entries = await e.ledger.entries();
      expect(entries).toHaveLength(2 + 2); // two spawns (run.spawn) and two fetches
      const fetches = entries.filter((x) => x.capability === 'web.fetch');
      for (const f of fetches) {
        const path = f.context.runPath as string[];
        expect(path).toHaveLength(2);
        expect(path[0]).toBe('run-fan');
        expect(path[1]).toMatch(/^worker:/);
        expect(f.context.tenant).toBe('acme');
      }
      expect(new Set(fetches.map((f) => f.runId)).size).toBe(2);
      const { seq } = await e.halt({ runId: 'run-fan' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(signals.every((x) => x.aborted)).toBe(true);
      // Resuming the thread while its halt stands: refused before any task or effect starts.
      const before = (await e.ledger.entries()).length;
      await expect(ks.invoke(graph, null, thread('run-fan'))).rejects.toMatchObject({
        code: 'KS_HALTED',
      });
      expect(started).toBe(2);
      expect((await e.ledger.entries()).length).toBe(before);
    });

    it('a createAgent agent used as a subgraph acts as a child run of the thread; a thread halt aborts its tool in flight; another tenant keeps going', async () => {
      const e = await env();
      const sent: string[] = [];
      const gate = deferred();
      const inFlight = deferred();
      const email = tool(
        async ({ amount }, config) => {
          if (config.configurable?.['thread_id'] === 'run-sub2') {
            inFlight.resolve();
            await Promise.race([gate.promise, sleep(1500, config.signal)]);
            sent.push('late');
            return 'late';
          }
          sent.push(String(config.toolCall?.id));
          return `sent ${amount}`;
        },
        { name: 'email', description: 'send', schema },
      );
      const ks = killSwitch(e.guard, { context: (c) => c as { tenant?: string } });
      const Outer = Annotation.Root({
        messages: Annotation<unknown[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
      });
      const outer = () =>
        new StateGraph(Outer)
          .addNode(
            'agent',
            createAgent({
              model: new ScriptedChatModel(toolEveryTurn('email', 1)),
              tools: [email],
              middleware: [ks.middleware],
            }).graph as never,
          )
          .addEdge(START, 'agent')
          .addEdge('agent', END)
          .compile();
      await ks.invoke(outer(), input, { ...thread('run-sub'), context: { tenant: 'acme' } });
      expect(sent).toEqual(['call-0']);
      const [entry] = (await e.ledger.entries()).filter((x) => x.capability === 'email');
      const path = entry?.context.runPath as string[];
      expect(path).toHaveLength(2);
      expect(path[0]).toBe('run-sub');
      expect(path[1]).toMatch(/^agent:/);
      expect(entry?.key).toBe(effectKey(path[1]!, 'call-0'));
      expect(childRunId('run-sub', path[1]!.replace(/\.[0-9a-f]+$/, ''))).toBe(path[1]);
      // A halt on the thread reaches the subgraph's child run: its tool in flight is aborted by
      // the guard itself (the effect's run path holds the thread), not only by the graph's signal.
      const p = ks
        .invoke(outer(), input, { ...thread('run-sub2'), context: { tenant: 'acme' } })
        .catch((x: unknown) => x);
      await inFlight.promise;
      const { seq } = await e.halt({ runId: 'run-sub2' });
      expect(await p).toBeInstanceOf(HaltedError);
      gate.resolve();
      await e.guard.flush();
      const [aborted] = (await e.ledger.entries()).filter(
        (x) =>
          x.capability === 'email' &&
          (x.context.runPath as string[] | undefined)?.[0] === 'run-sub2',
      );
      const statuses = aborted?.history.map((h) => h.status);
      expect(statuses).toContain('aborted');
      expect(aborted?.history.find((h) => h.status === 'aborted')?.flipSeq).toBe(seq);
      // An unrelated tenant's thread keeps going under a tenant halt of acme.
      await e.halt({ tenant: 'acme' });
      await ks.invoke(outer(), input, { ...thread('run-sub3'), context: { tenant: 'globex' } });
      expect(sent.filter((x) => x === 'call-0')).toHaveLength(2);
    });
  });

  describe('KS-14.1.6 / KS-14.5.4 subgraph child runs: a streaming child stops with its thread, and the lineage crosses in headers', () => {
    const Outer = Annotation.Root({
      messages: Annotation<unknown[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
    });
    const outer = (agent: { graph: unknown }) =>
      new StateGraph(Outer)
        .addNode('agent', agent.graph as never)
        .addEdge(START, 'agent')
        .addEdge('agent', END)
        .compile();

    it("a halted thread ends a subgraph agent whose model response is streaming: the thread's stream throws the HaltedError and the model call is aborted", async () => {
      const e = await env();
      const tokens = Array.from({ length: 60 }, (_, i) => `t${i} `);
      const model = new ScriptedChatModel(() => ({ text: tokens, tokenMs: 10 }));
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const graph = outer(createAgent({ model, tools: [], middleware: [ks.middleware] }));
      let seen = 0;
      const consumed = (async () => {
        for await (const _chunk of ks.stream(graph, input, {
          ...thread('run-sub-stream'),
          streamMode: 'messages',
          subgraphs: true,
        }))
          seen++;
      })().catch((x: unknown) => x);
      while (seen < 3) await sleep(5);
      const { seq } = await e.halt({ runId: 'run-sub-stream' });
      const err = await consumed;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      expect(seen).toBeLessThan(tokens.length);
      await sleep(30);
      expect(model.aborts).toHaveLength(1);
    });

    it("a subgraph agent's tool sends its child run path and tenant in headers; the service refuses its effect once the thread is halted", async () => {
      const e = await env();
      const ep = await lineageEndpoint(e.guard);
      try {
        const remote = tool(
          async (_i, config) =>
            (await callWithLineage(`${ep.url}/${config.toolCall?.id}`, config.signal)).body,
          { name: 'remote', description: 'remote', schema },
        );
        const ks = killSwitch(e.guard, { tenant: 'acme' });
        const graph = outer(
          createAgent({
            model: new ScriptedChatModel(toolEveryTurn('remote', 1)),
            tools: [remote],
            middleware: [ks.middleware],
          }),
        );
        await ks.invoke(graph, input, thread('run-sub-h'));
        expect(ep.seen).toHaveLength(1);
        const [seen] = ep.seen;
        expect(seen?.tenant).toBe('acme');
        expect(seen?.runPath).toHaveLength(2);
        expect(seen?.runPath[0]).toBe('run-sub-h');
        expect(seen?.runPath[1]).toMatch(/^agent:/);
        await e.halt({ runId: 'run-sub-h' });
        const after = await runInScope(seen!, () => callWithLineage(`${ep.url}/after`));
        expect(after).toEqual({ status: 409, body: 'KS_HALTED' });
      } finally {
        await ep.close();
      }
    });
  });

  // KS-14.1.2 without ks.invoke each hook used to build a run of its own; the thread's hooks now
  // share one run while it is not stopped (and a bench-measured AgentRun per call less).
  describe('KS-14.1.2 KS-14.5.1 without ks.invoke, the tool calls of one thread share the run', () => {
    const call = (id: string, name: string) => ({
      toolCall: { id, name, args: { amount: 1 }, type: 'tool_call' as const },
      state: { messages: [] },
      runtime: { configurable: { thread_id: 'run-shared' } },
    });

    it('a refused call aborts the signal of a call of the same thread in flight; another thread goes on; after the resume a fresh run lets calls through', async () => {
      const e = await env();
      const ks = killSwitch(e.guard, { tenant: 'acme' });
      const wrap = ks.middleware.wrapToolCall!;
      const started = deferred();
      let abortedWith: unknown;
      const slow = tool(
        async (_input, config) =>
          new Promise<string>((_resolve, reject) => {
            const signal = (config as { signal: AbortSignal }).signal;
            signal.addEventListener('abort', () => {
              abortedWith = signal.reason;
              reject(signal.reason as Error);
            });
            started.resolve();
          }),
        { name: 'slow', description: 'slow', schema },
      );
      const refund = tool(async () => 'refunded', {
        name: 'refund',
        description: 'refund',
        schema,
      });
      const handler = (req: { tool: unknown; toolCall: unknown }) =>
        (req.tool as typeof slow).invoke(req.toolCall as never) as never;
      const inFlight = wrap({ ...call('call-a', 'slow'), tool: slow } as never, handler as never);
      const inFlightErr = (inFlight as Promise<unknown>).catch((x: unknown) => x);
      await started.promise;
      const { seq } = await e.halt({ capability: 'refund' }, 'refunds frozen');
      const refused = await (
        wrap(
          { ...call('call-b', 'refund'), tool: refund } as never,
          handler as never,
        ) as Promise<unknown>
      ).catch((x: unknown) => x);
      expect(refused).toMatchObject({ code: 'KS_HALTED', flip: { seq } });
      // The run stopped with the refusal, so the thread's other call was aborted with it.
      expect(await inFlightErr).toBeInstanceOf(HaltedError);
      expect(abortedWith).toMatchObject({ code: 'KS_HALTED', flip: { seq } });
      // Another thread's run is not touched.
      const other = await (
        wrap(
          {
            ...call('call-c', 'slow'),
            runtime: { configurable: { thread_id: 'run-other' } },
            tool: tool(async () => 'ok', { name: 'slow', description: 'slow', schema }),
          } as never,
          handler as never,
        ) as Promise<unknown>
      ).catch((x: unknown) => x);
      expect(other).toMatchObject({ content: 'ok' });
      await e.resume({ capability: 'refund' });
      const after = await (wrap(
        { ...call('call-d', 'refund'), tool: refund } as never,
        handler as never,
      ) as Promise<unknown>);
      expect(after).toMatchObject({ content: 'refunded' });
      expect((await e.ledger.entries({ key: effectKey('run-shared', 'call-d') }))[0]?.status).toBe(
        'landed',
      );
    });
  });
});
