import { performance } from 'node:perf_hooks';
import { Agent, Runner, handoff, setTracingDisabled, tool } from '@openai/agents';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { asTool, guardRun } from '../../../src/adapters/openai-agents/index.js';
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
import { ScriptedModel } from './scripted-model.js';

// No network: tracing would export to the OpenAI API.
setTracingDisabled(true);

const env = killSwitchEnvPerTest();

const params = z.object({ amount: z.number() });

describe('KS-14.3 the OpenAI Agents SDK adapter (@openai/agents 0.20, scripted model)', () => {
  describe('KS-14.1.2 a halted capability refuses the tool and stops the run', () => {
    it('rejects with the HaltedError naming the flip after no further model call; the tool never ran', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'refund' }, 'refunds frozen');
      const model = new ScriptedModel(toolEveryTurn('refund'));
      let ran = 0;
      const refund = tool({
        name: 'refund',
        description: 'refund',
        parameters: params,
        execute: async () => ++ran,
      });
      const agent = new Agent({ name: 'support', model, tools: [refund] });
      const run = guardRun(e.guard, { runId: 'run-cap', tenant: 'acme' });
      const err = await run.run(agent, 'refund it', { maxTurns: 5 }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq, reason: 'refunds frozen' } });
      expect(ran).toBe(0);
      expect(model.calls).toBe(1);
      const [entry] = await e.ledger.entries();
      expect(entry).toMatchObject({ key: effectKey('run-cap', 'call-0'), status: 'refused' });
      // The caller's agent was not changed: the run used a guarded clone.
      expect(agent.tools[0]).toBe(refund);
    });

    it('(control) the same halt through a bare guard.run inside execute is fed back as "Please try again"', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      const model = new ScriptedModel(toolEveryTurn('refund'));
      const refund = tool({
        name: 'refund',
        description: 'refund',
        parameters: params,
        execute: (_i, _c, d) =>
          e.guard.run(
            { context: {}, runId: 'bare', step: d!.toolCall!.callId, capability: 'refund' },
            async () => 1,
          ),
      });
      const agent = new Agent({ name: 'support', model, tools: [refund] });
      const result = await new Runner().run(agent, 'x', { maxTurns: 6 });
      expect(model.calls).toBe(5);
      expect(JSON.stringify(result.newItems.map((i) => i.rawItem))).toContain('Please try again');
    });
  });

  describe('KS-14.1.3 a halt arriving mid-tool aborts the tool at once and frees the caller', () => {
    it('aborts the tool signal within 5 ms of the flip reaching the provider; the caller is freed though the tool ignores it', async () => {
      const e = await env();
      const model = new ScriptedModel(toolEveryTurn('slow_tool'));
      const started = deferred();
      let abortedAt = 0;
      let turned = true;
      let finished = false;
      const slow = tool({
        name: 'slow_tool',
        description: 'slow',
        parameters: params,
        execute: async (_i, _c, d) => {
          d!.signal!.addEventListener('abort', () => {
            abortedAt = performance.now();
            turned = e.turnedSinceArrival();
          });
          started.resolve();
          await sleep(1500); // ignores its signal on purpose
          finished = true;
          return 'late';
        },
      });
      const run = guardRun(e.guard, { runId: 'run-mid', tenant: 'acme' });
      const p = run
        .run(new Agent({ name: 'a', model, tools: [slow] }), 'x')
        .catch((x: unknown) => x);
      await started.promise;
      const { arrivedAt, seq } = await e.halt({ tenant: 'acme' });
      const err = await p;
      const freedAt = performance.now();
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
      // Aborted within the turn of the event loop that delivered the flip (no timer, no I/O in
      // between): on an idle machine that is well under 5 ms (bench:adapters measures it).
      expect(turned).toBe(false);
      expect(abortedAt).toBeGreaterThanOrEqual(arrivedAt);
      expect(abortedAt).toBeGreaterThan(0);
      // Freed long before the tool's 1.5 s body ends: the caller did not wait for it.
      expect(freedAt - arrivedAt).toBeLessThan(1000);
      expect(finished).toBe(false);
      expect(model.calls).toBe(1);
      expect((await e.ledger.entries())[0]?.status).toBe('aborted');
    });
  });

  describe('KS-14.1.4 a halt during a streamed model response ends the stream and the run', () => {
    it('the text stream ends with the HaltedError instead of silently; completed rejects with it', async () => {
      const e = await env();
      const tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
      const model = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'run-stream', tenant: 'acme' });
      const result = await run.runStreamed(new Agent({ name: 'a', model }), 'x');
      let seen = 0;
      const consumed = (async () => {
        for await (const _t of result.toTextStream()) seen++;
      })().catch((x: unknown) => x);
      while (seen < 3) await sleep(5);
      const tokensBefore = model.tokens;
      const { seq } = await e.halt({ runId: 'run-stream' });
      const err = await consumed;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      expect(seen).toBeLessThan(tokens.length);
      await expect(result.completed).rejects.toBeInstanceOf(HaltedError);
      await sleep(30);
      // The provider's own stream saw its signal abort: it produced at most the token it was on.
      expect(model.aborts).toHaveLength(1);
      expect(model.tokens - tokensBefore).toBeLessThanOrEqual(1);
    });

    it('a model capability halt refuses the next model call, also for a model named by string', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'llm' });
      const model = new ScriptedModel(() => ({ text: ['x'] }));
      const provider = { getModel: async () => model };
      const run = guardRun(e.guard, { runId: 'run-llm' });
      await expect(
        run.run(new Agent({ name: 'a', model: 'scripted-1' }), 'x', {
          runConfig: { modelProvider: provider },
        }),
      ).rejects.toMatchObject({ code: 'KS_HALTED', flip: { seq } });
      expect(model.calls).toBe(0);
    });
  });

  describe('KS-14.1.5 the ledger keys effects by run and tool-call id; a resumed run repeats none', () => {
    it('records intent and landed under effectKey(runId, callId) and replays the recorded output', async () => {
      const e = await env();
      let sent = 0;
      const email = tool({
        name: 'email',
        description: 'send',
        parameters: params,
        execute: async ({ amount }) => ({ sent: ++sent, amount }),
      });
      const script = toolEveryTurn('email', 2);
      const agentWith = (m: ScriptedModel) => new Agent({ name: 'a', model: m, tools: [email] });
      await guardRun(e.guard, { runId: 'run-r', tenant: 'acme' }).run(
        agentWith(new ScriptedModel(script)),
        'x',
      );
      expect(sent).toBe(2);
      const entries = await e.ledger.entries({ runId: 'run-r' });
      expect(entries.map((x) => [x.key, x.history.map((h) => h.status)])).toEqual([
        [effectKey('run-r', 'call-0'), ['intent', 'landed']],
        [effectKey('run-r', 'call-1'), ['intent', 'landed']],
      ]);
      expect(entries[0]).toMatchObject({ capability: 'email', result: { sent: 1, amount: 10 } });
      const again = await guardRun(e.guard, { runId: 'run-r', tenant: 'acme' }).run(
        agentWith(new ScriptedModel(script)),
        'x',
      );
      expect(sent).toBe(2);
      expect(again.finalOutput).toBe('done');
    });
  });

  describe("KS-14.1.7 an unrelated tenant's run keeps going", () => {
    it('halting tenant acme stops its run while tenant globex completes every step', async () => {
      const e = await env();
      const gate = deferred();
      const landed: string[] = [];
      const work = (tenant: string) =>
        tool({
          name: 'work',
          description: 'work',
          parameters: params,
          execute: async (_i, _c, d) => {
            const id = d!.toolCall!.callId;
            if (id === 'call-1') await gate.promise;
            d!.signal!.throwIfAborted();
            landed.push(`${tenant}/${id}`);
            return 'ok';
          },
        });
      const acmeRun = guardRun(e.guard, { runId: 'run-a', tenant: 'acme' });
      const acme = acmeRun
        .run(
          new Agent({
            name: 'a',
            model: new ScriptedModel(toolEveryTurn('work', 3)),
            tools: [work('acme')],
          }),
          'x',
        )
        .catch((x: unknown) => x);
      const globex = guardRun(e.guard, { runId: 'run-g', tenant: 'globex' }).run(
        new Agent({
          name: 'g',
          model: new ScriptedModel(toolEveryTurn('work', 3)),
          tools: [work('globex')],
        }),
        'x',
      );
      while (landed.length < 2) await sleep(2);
      await e.halt({ tenant: 'acme' });
      while (!acmeRun.signal.aborted) await sleep(1);
      gate.resolve();
      expect(await acme).toBeInstanceOf(HaltedError);
      expect((await globex).finalOutput).toBe('done');
      expect(landed.filter((l) => l.startsWith('globex/'))).toEqual([
        'globex/call-0',
        'globex/call-1',
        'globex/call-2',
      ]);
      expect(landed.filter((l) => l.startsWith('acme/'))).toEqual(['acme/call-0']);
    });
  });

  describe('KS-14.3.1 handoff targets are guarded for the same run', () => {
    it('a tool of the agent handed off to is refused under the halt and stops the run', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      let ran = 0;
      const refund = tool({
        name: 'refund',
        description: 'r',
        parameters: params,
        execute: async () => ++ran,
      });
      const billing = new Agent({
        name: 'billing',
        model: new ScriptedModel(toolEveryTurn('refund')),
        tools: [refund],
      });
      const triageModel = new ScriptedModel((n) =>
        n === 0
          ? { toolCalls: [{ id: 'h-0', name: 'transfer_to_billing', input: {} }] }
          : { text: ['?'] },
      );
      const triage = new Agent({
        name: 'triage',
        model: triageModel,
        handoffs: [handoff(billing)],
      });
      const err = await guardRun(e.guard, { runId: 'run-h' })
        .run(triage, 'x')
        .catch((x: unknown) => x);
      expect(err).toBeInstanceOf(HaltedError);
      expect(ran).toBe(0);
    });
  });

  describe('KS-14.1.6 / KS-14.3.4 / KS-14.3.5 agents used as tools and handoffs are child runs', () => {
    /** A tool that waits (ignoring nothing: it honours its signal) and reports its signal. */
    interface Seen {
      signal?: AbortSignal | undefined;
      readonly started: ReturnType<typeof deferred<void>>;
    }
    function slowTool(name: string, seen: Seen) {
      return tool({
        name,
        description: name,
        parameters: params,
        execute: async (_i, _ctx, details) => {
          seen.signal = details?.signal;
          seen.started.resolve();
          await sleep(1500, details?.signal);
          return 'late';
        },
      });
    }

    it('asTool: the sub-agent runs as a child run with its tools guarded; halting the parent aborts its tool and ends the run', async () => {
      const e = await env();
      const seen: Seen = { started: deferred() };
      const researcherModel = new ScriptedModel(toolEveryTurn('lookup', 1));
      const researcher = new Agent({
        name: 'researcher',
        model: researcherModel,
        tools: [slowTool('lookup', seen)],
      });
      const triageModel = new ScriptedModel((n) =>
        n === 0
          ? { toolCalls: [{ id: 'r-0', name: 'research', input: { input: 'topic' } }] }
          : { text: ['?'] },
      );
      const triage = new Agent({
        name: 'triage',
        model: triageModel,
        tools: [asTool(researcher, { toolName: 'research', toolDescription: 'r' })],
      });
      const p = guardRun(e.guard, { runId: 'run-t', tenant: 'acme' })
        .run(triage, 'x')
        .catch((x: unknown) => x);
      await seen.started.promise;
      const child = childRunId('run-t', 'r-0');
      const [entry] = await e.ledger.entries({ runId: child });
      expect(entry).toMatchObject({
        key: effectKey(child, 'call-0'),
        capability: 'lookup',
        context: { tenant: 'acme', runPath: ['run-t', child] },
      });
      const { seq } = await e.halt({ runId: 'run-t' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(seen.signal?.aborted).toBe(true);
      expect(triageModel.calls).toBe(1);
      expect(researcherModel.calls).toBe(1);
    });

    it('asTool: a halt on the child alone refuses its tool and ends the parent run with it (no "please try again")', async () => {
      const e = await env();
      let ran = 0;
      const researcher = new Agent({
        name: 'researcher',
        model: new ScriptedModel(toolEveryTurn('lookup', 1)),
        tools: [
          tool({
            name: 'lookup',
            description: 'l',
            parameters: params,
            execute: async () => ++ran,
          }),
        ],
      });
      const triageModel = new ScriptedModel((n) =>
        n < 3
          ? { toolCalls: [{ id: `r-${n}`, name: 'research', input: { input: 'topic' } }] }
          : { text: ['?'] },
      );
      const triage = new Agent({
        name: 'triage',
        model: triageModel,
        tools: [asTool(researcher, { toolName: 'research', toolDescription: 'r' })],
      });
      const { seq } = await e.halt({ runId: childRunId('run-c', 'r-0') });
      const err = await guardRun(e.guard, { runId: 'run-c' })
        .run(triage, 'x')
        .catch((x: unknown) => x);
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(ran).toBe(0);
      expect(triageModel.calls).toBe(1);
    });

    it('refuses a tool made by Agent.asTool directly (its agent would run unguarded)', async () => {
      const e = await env();
      const researcher = new Agent({
        name: 'researcher',
        model: new ScriptedModel(toolEveryTurn('x', 0)),
      });
      const triage = new Agent({
        name: 'triage',
        model: new ScriptedModel(toolEveryTurn('x', 0)),
        tools: [researcher.asTool({ toolName: 'research', toolDescription: 'r' })],
      });
      await expect(guardRun(e.guard, { runId: 'run-d' }).run(triage, 'x')).rejects.toMatchObject({
        code: 'KS_INVALID_OPTION',
        message: expect.stringMatching(/asTool/),
      });
    });

    it("a handoff continues the run under a child run; halting the parent aborts the target's tool in flight; an unrelated tenant keeps going", async () => {
      const e = await env();
      const seen: Seen = { started: deferred() };
      const mk = (tenant: string, seenBy?: Seen) => {
        const billing = new Agent({
          name: 'billing',
          model: new ScriptedModel(toolEveryTurn('refund', 1)),
          tools: [
            seenBy !== undefined
              ? slowTool('refund', seenBy)
              : tool({
                  name: 'refund',
                  description: 'r',
                  parameters: params,
                  execute: async () => tenant,
                }),
          ],
        });
        return new Agent({
          name: 'triage',
          model: new ScriptedModel((n) =>
            n === 0
              ? { toolCalls: [{ id: 'h-0', name: 'transfer_to_billing', input: {} }] }
              : { text: ['?'] },
          ),
          handoffs: [billing],
        });
      };
      const p = guardRun(e.guard, { runId: 'run-h2', tenant: 'acme' })
        .run(mk('acme', seen), 'x')
        .catch((x: unknown) => x);
      await seen.started.promise;
      const child = childRunId('run-h2', 'handoff:billing');
      const [entry] = await e.ledger.entries({ runId: child });
      expect(entry?.context).toMatchObject({ tenant: 'acme', runPath: ['run-h2', child] });
      const spawn = (await e.ledger.entries({ runId: 'run-h2' })).find(
        (x) => x.capability === 'run.spawn',
      );
      expect(spawn?.status).toBe('landed');
      const { seq } = await e.halt({ runId: 'run-h2' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(seen.signal?.aborted).toBe(true);
      const other = await guardRun(e.guard, { runId: 'run-h3', tenant: 'globex' }).run(
        mk('globex'),
        'x',
      );
      expect(other.finalOutput).toBe('done');
    });
  });

  describe('KS-14.1.6 child runs: a streaming child stops with its parent, and the lineage crosses in headers', () => {
    it("a halted parent ends a child whose model response is streaming: the child's text stream throws the HaltedError and the provider stream is aborted", async () => {
      const e = await env();
      const tokens = Array.from({ length: 60 }, (_, i) => `t${i} `);
      const subModel = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'parent-s', tenant: 'acme' });
      let seen = 0;
      const child = run
        .child('fan-0', async (sub) => {
          const result = await sub.runStreamed(new Agent({ name: 's', model: subModel }), 'y');
          for await (const _t of result.toTextStream()) seen++;
          return 'finished';
        })
        .catch((x: unknown) => x);
      while (seen < 3) await sleep(5);
      const { seq } = await e.halt({ runId: 'parent-s' });
      const err = await child;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(seen).toBeLessThan(tokens.length);
      await sleep(30);
      expect(subModel.aborts).toHaveLength(1);
    });

    it("an asTool child's tool sends the child's run path and tenant in headers; the service refuses its effect once the parent is halted", async () => {
      const e = await env();
      const ep = await lineageEndpoint(e.guard);
      try {
        const remote = tool({
          name: 'remote',
          description: 'remote',
          parameters: params,
          execute: async (_i, _ctx, details) =>
            (await callWithLineage(`${ep.url}/${details?.toolCall?.callId}`, details?.signal)).body,
        });
        const researcher = new Agent({
          name: 'researcher',
          model: new ScriptedModel(toolEveryTurn('remote', 1)),
          tools: [remote],
        });
        const triage = new Agent({
          name: 'triage',
          model: new ScriptedModel((n) =>
            n === 0
              ? { toolCalls: [{ id: 'r-0', name: 'research', input: { input: 'topic' } }] }
              : { text: ['done'] },
          ),
          tools: [asTool(researcher, { toolName: 'research', toolDescription: 'r' })],
        });
        await guardRun(e.guard, { runId: 'parent-h', tenant: 'acme' }).run(triage, 'x');
        const child = childRunId('parent-h', 'r-0');
        expect(ep.seen).toEqual([{ tenant: 'acme', runPath: ['parent-h', child] }]);
        await e.halt({ runId: 'parent-h' });
        const after = await runInScope(ep.seen[0]!, () => callWithLineage(`${ep.url}/after`));
        expect(after).toEqual({ status: 409, body: 'KS_HALTED' });
      } finally {
        await ep.close();
      }
    });
  });

  describe('KS-14.3.2 model calls are guarded whether the model is named by object or by string', () => {
    it("a model object, a string through a given provider and a string through the SDK's default provider are all refused under a model halt", async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'llm' });
      const model = new ScriptedModel(() => ({ text: ['x'] }));
      const run = guardRun(e.guard, { runId: 'run-models' });
      await expect(run.run(new Agent({ name: 'obj', model }), 'x')).rejects.toMatchObject({
        code: 'KS_HALTED',
        flip: { seq },
      });
      await expect(
        run.run(new Agent({ name: 'given', model: 'scripted-1' }), 'x', {
          runConfig: { modelProvider: { getModel: async () => model } },
        }),
      ).rejects.toMatchObject({ code: 'KS_HALTED', flip: { seq } });
      expect(model.calls).toBe(0);
      // The default provider (OpenAI's): were it unwrapped, the call would go to this closed port.
      const saved = { key: process.env['OPENAI_API_KEY'], url: process.env['OPENAI_BASE_URL'] };
      process.env['OPENAI_API_KEY'] = 'sk-test-not-a-key';
      process.env['OPENAI_BASE_URL'] = 'http://127.0.0.1:9/v1';
      try {
        await expect(
          run.run(new Agent({ name: 'default', model: 'gpt-4o-mini' }), 'x'),
        ).rejects.toMatchObject({ code: 'KS_HALTED', flip: { seq } });
      } finally {
        for (const [k, v] of [
          ['OPENAI_API_KEY', saved.key],
          ['OPENAI_BASE_URL', saved.url],
        ] as const)
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
      }
    });
  });

  describe("KS-14.3.3 the runner gets the run's signal: every way of reading a streamed run ends with the HaltedError", () => {
    const reads = {
      iteration: async (r: AsyncIterable<unknown>, tick: () => void) => {
        for await (const _ev of r) tick();
      },
      toStream: async (r: { toStream(): ReadableStream<unknown> }, tick: () => void) => {
        const reader = r.toStream().getReader();
        while (!(await reader.read()).done) tick();
      },
    };
    for (const [how, read] of Object.entries(reads))
      it(`${how} rejects with the HaltedError; completed too; the model stream is aborted`, async () => {
        const e = await env();
        const tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
        const model = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
        const run = guardRun(e.guard, { runId: `run-${how}`, tenant: 'acme' });
        const result = await run.runStreamed(new Agent({ name: 'a', model }), 'x');
        let seen = 0;
        const consumed = read(result as never, () => seen++).catch((x: unknown) => x);
        while (seen < 3) await sleep(5);
        const { seq } = await e.halt({ runId: `run-${how}` });
        const err = await consumed;
        expect(err).toBeInstanceOf(HaltedError);
        expect(err).toMatchObject({ flip: { seq } });
        await expect(result.completed).rejects.toBeInstanceOf(HaltedError);
        await sleep(30);
        expect(model.aborts).toHaveLength(1);
        expect(model.tokens).toBeLessThan(tokens.length);
      });
  });
});
