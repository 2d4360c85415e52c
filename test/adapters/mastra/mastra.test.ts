import { performance } from 'node:perf_hooks';
import { Agent } from '@mastra/core/agent';
import { createTool } from '@mastra/core/tools';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { guardRun } from '../../../src/adapters/mastra/index.js';
import { HaltedError } from '../../../src/errors.js';
import { effectKey } from '../../../src/ledger/index.js';
import { childRunId, runInScope } from '../../../src/scope/index.js';
import { ScriptedModel } from '../ai-sdk/scripted-model.js';
import {
  callWithLineage,
  deferred,
  killSwitchEnvPerTest,
  lineageEndpoint,
  sleep,
  toolEveryTurn,
} from '../harness.js';

const env = killSwitchEnvPerTest();

const inputSchema = z.object({ amount: z.number() });

/** A Mastra tool whose body is `execute` (the context Mastra hands it included). */
function mastraTool(
  id: string,
  execute: (
    input: { amount: number },
    ctx: { abortSignal?: AbortSignal; agent?: { toolCallId: string } },
  ) => Promise<unknown>,
) {
  return createTool({ id, description: id, inputSchema, execute: execute as never });
}

const base = { instructions: 'You handle tickets.' };

describe('KS-14.7 / KS-14.7.3 the Mastra adapter (@mastra/core 1.x, scripted model)', () => {
  describe('KS-14.1.1 / KS-14.7.1 each tool call is a guarded effect named after the tool', () => {
    it('keys the effect by run and tool-call id, hands the tool a signal, and leaves the caller tools unchanged', async () => {
      const e = await env();
      let signal: AbortSignal | undefined;
      const lookup = mastraTool('lookup', async (_i, ctx) => {
        signal = ctx.abortSignal;
        return { found: true };
      });
      const run = guardRun(e.guard, { runId: 'run-map', capability: (n) => `crm.${n}` });
      const agent = run.agent({
        ...base,
        id: 'a',
        name: 'a',
        model: new ScriptedModel(toolEveryTurn('lookup', 1)),
        tools: { lookup },
      });
      const r = await run.generate(agent, 'x', { maxSteps: 3 });
      expect(r.text).toBe('done');
      expect(signal).toBeInstanceOf(AbortSignal);
      const [entry] = await e.ledger.entries({ runId: 'run-map' });
      expect(entry).toMatchObject({
        key: effectKey('run-map', 'call-0'),
        capability: 'crm.lookup',
        result: { found: true },
      });
      expect(run.tools({ lookup }).lookup).not.toBe(lookup);
    });

    it('refuses a tool call that carries no tool-call id (no stable key), dispatching nothing', async () => {
      const e = await env();
      let ran = 0;
      const work = mastraTool('work', async () => ++ran);
      const guarded = guardRun(e.guard, { runId: 'run-noid' }).tools({ work }).work;
      await expect(guarded.execute!({ amount: 1 }, {} as never)).rejects.toThrow(/toolCallId/);
      expect(ran).toBe(0);
      expect(await e.ledger.entries()).toEqual([]);
    });

    it('refuses a model-router id string and bad options', async () => {
      const e = await env();
      const run = guardRun(e.guard, { runId: 'run-x' });
      expect(() => run.model('openai/gpt-5' as never)).toThrow(/option model/);
      expect(() => guardRun(e.guard, { runId: '' })).toThrow(/option runId/);
      expect(() => guardRun({} as never, { runId: 'r' })).toThrow(/option guard/);
    });
  });

  describe('KS-14.1.2 a halted capability refuses the tool and stops the run', () => {
    it('rejects with the HaltedError naming the flip after no further model call; the tool never ran', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'refund' }, 'refunds frozen');
      const model = new ScriptedModel(toolEveryTurn('refund'));
      let ran = 0;
      const refund = mastraTool('refund', async () => ++ran);
      const run = guardRun(e.guard, { runId: 'run-cap', tenant: 'acme' });
      const agent = run.agent({ ...base, id: 'a', name: 'a', model, tools: { refund } });
      const err = await run.generate(agent, 'refund it', { maxSteps: 4 }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq, reason: 'refunds frozen' } });
      expect(ran).toBe(0);
      expect(model.calls).toBe(1);
      const [entry] = await e.ledger.entries();
      expect(entry).toMatchObject({ key: effectKey('run-cap', 'call-0'), status: 'refused' });
    });

    it('(control) the same halt through a bare guard.run inside execute lets Mastra call the model again', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      const model = new ScriptedModel(toolEveryTurn('refund'));
      const refund = mastraTool('refund', (_i, ctx) =>
        e.guard.run(
          {
            context: { tenant: 'acme' },
            runId: 'bare',
            step: ctx.agent!.toolCallId,
            capability: 'refund',
          },
          async () => 1,
        ),
      );
      const agent = new Agent({
        ...base,
        id: 'a',
        name: 'a',
        model: model as unknown as ConstructorParameters<typeof Agent>[0]['model'],
        tools: { refund },
      });
      const result = await agent.generate('x', { maxSteps: 5 });
      // Mastra fed the HaltedError back to the model as a tool error and went on.
      expect(model.calls).toBe(5);
      expect(result.text).toBe('done');
    });
  });

  describe('KS-14.1.3 a halt arriving mid-tool aborts the tool at once and frees the caller', () => {
    it('aborts the tool signal in the turn that delivered the flip; the caller is freed though the tool ignores it', async () => {
      const e = await env();
      const model = new ScriptedModel(toolEveryTurn('slowTool'));
      const started = deferred();
      let abortedAt = 0;
      let turned = true;
      let finished = false;
      const slowTool = mastraTool('slowTool', async (_i, { abortSignal }) => {
        abortSignal!.addEventListener('abort', () => {
          abortedAt = performance.now();
          turned = e.turnedSinceArrival();
        });
        started.resolve();
        await sleep(1500); // ignores its signal on purpose
        finished = true;
        return 'late';
      });
      const run = guardRun(e.guard, { runId: 'run-mid', tenant: 'acme' });
      const agent = run.agent({ ...base, id: 'a', name: 'a', model, tools: { slowTool } });
      const p = run.generate(agent, 'x', { maxSteps: 4 }).catch((x: unknown) => x);
      await started.promise;
      const { arrivedAt, seq } = await e.halt({ tenant: 'acme' });
      const err = await p;
      const freedAt = performance.now();
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
      expect(turned).toBe(false);
      expect(abortedAt).toBeGreaterThanOrEqual(arrivedAt);
      expect(freedAt - arrivedAt).toBeLessThan(1000);
      expect(finished).toBe(false);
      expect(model.calls).toBe(1);
      const [entry] = await e.ledger.entries();
      expect(entry?.status).toBe('aborted');
    });
  });

  describe('KS-14.1.4 / KS-14.7.2 a halt during a streamed model response ends the stream and the run', () => {
    it('the text stream throws the HaltedError instead of ending silently; the provider stream is aborted', async () => {
      const e = await env();
      const tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
      const model = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'run-stream', tenant: 'acme' });
      const agent = run.agent({ ...base, id: 'a', name: 'a', model });
      const output = await run.stream(agent, 'x');
      let seen = 0;
      let afterFlip = 0;
      let flipped = false;
      const consumed = (async () => {
        for await (const _t of output.textStream) {
          seen++;
          if (flipped) afterFlip++;
        }
      })().catch((x: unknown) => x);
      while (seen < 3) await sleep(5);
      const tokensBefore = model.tokens;
      const { seq } = await e.halt({ runId: 'run-stream' });
      flipped = true;
      const err = await consumed;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      expect(seen).toBeLessThan(tokens.length);
      expect(afterFlip).toBeLessThanOrEqual(1);
      await expect(output.text).rejects.toBeInstanceOf(HaltedError);
      await sleep(30);
      expect(model.aborts).toHaveLength(1);
      expect(model.tokens - tokensBefore).toBeLessThanOrEqual(1);
    });

    it('a model capability halt refuses the next model call', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'llm' });
      const model = new ScriptedModel(() => ({ text: ['x'] }));
      const run = guardRun(e.guard, { runId: 'run-llm' });
      const agent = run.agent({ ...base, id: 'a', name: 'a', model });
      await expect(run.generate(agent, 'x')).rejects.toMatchObject({
        code: 'KS_HALTED',
        flip: { seq },
      });
      expect(model.calls).toBe(0);
    });
  });

  describe('KS-14.1.5 the ledger keys effects by run and tool-call id; a resumed run repeats none', () => {
    it('records intent and landed under effectKey(runId, toolCallId) and replays the recorded result', async () => {
      const e = await env();
      let sent = 0;
      const email = mastraTool('email', async ({ amount }) => ({ sent: ++sent, amount }));
      const once = async () => {
        const run = guardRun(e.guard, { runId: 'run-r', tenant: 'acme' });
        const agent = run.agent({
          ...base,
          id: 'a',
          name: 'a',
          model: new ScriptedModel(toolEveryTurn('email', 2)),
          tools: { email },
        });
        return run.generate(agent, 'x', { maxSteps: 5 });
      };
      const first = await once();
      expect(sent).toBe(2);
      const entries = await e.ledger.entries({ runId: 'run-r' });
      expect(entries.map((x) => [x.key, x.history.map((h) => h.status)])).toEqual([
        [effectKey('run-r', 'call-0'), ['intent', 'landed']],
        [effectKey('run-r', 'call-1'), ['intent', 'landed']],
      ]);
      expect(entries[0]).toMatchObject({ capability: 'email', result: { sent: 1, amount: 10 } });
      // The same run again (a resume replays the same tool calls): nothing is sent again.
      const again = await once();
      expect(sent).toBe(2);
      const outputs = (r: typeof first) =>
        r.steps.map((s) =>
          s.toolResults.map((t) => (t as { payload: { result: unknown } }).payload.result),
        );
      expect(outputs(again)).toEqual(outputs(first));
    });
  });

  describe("KS-14.1.7 an unrelated tenant's run keeps going", () => {
    it('halting tenant acme stops its run while tenant globex completes every step', async () => {
      const e = await env();
      const gate = deferred();
      const landed: string[] = [];
      const work = (tenant: string) =>
        mastraTool('work', async (_i, { agent, abortSignal }) => {
          if (agent!.toolCallId === 'call-1') await gate.promise;
          abortSignal!.throwIfAborted();
          landed.push(`${tenant}/${agent!.toolCallId}`);
          return 'ok';
        });
      const acmeRun = guardRun(e.guard, { runId: 'run-a', tenant: 'acme' });
      const acme = acmeRun
        .generate(
          acmeRun.agent({
            ...base,
            id: 'a',
            name: 'a',
            model: new ScriptedModel(toolEveryTurn('work', 3)),
            tools: { work: work('acme') },
          }),
          'x',
          { maxSteps: 5 },
        )
        .catch((x: unknown) => x);
      const globexRun = guardRun(e.guard, { runId: 'run-g', tenant: 'globex' });
      const globex = globexRun.generate(
        globexRun.agent({
          ...base,
          id: 'g',
          name: 'g',
          model: new ScriptedModel(toolEveryTurn('work', 3)),
          tools: { work: work('globex') },
        }),
        'x',
        { maxSteps: 5 },
      );
      while (landed.length < 2) await sleep(2);
      await e.halt({ tenant: 'acme' });
      while (!acmeRun.signal.aborted) await sleep(1);
      gate.resolve();
      expect(await acme).toBeInstanceOf(HaltedError);
      expect((await globex).text).toBe('done');
      expect(landed.filter((l) => l.startsWith('globex/'))).toEqual([
        'globex/call-0',
        'globex/call-1',
        'globex/call-2',
      ]);
      expect(landed.filter((l) => l.startsWith('acme/'))).toEqual(['acme/call-0']);
    });
  });

  describe('KS-14.1.6 a sub-agent called from a tool is a child run; a halted parent stops it', () => {
    it('halting the parent aborts the sub-agent tool in flight, ends the run with the HaltedError, and refuses a later spawn', async () => {
      const e = await env();
      const started = deferred();
      let subSignal: AbortSignal | undefined;
      const lookup = mastraTool('lookup', async (_i, { abortSignal }) => {
        subSignal = abortSignal;
        started.resolve();
        await sleep(1500, abortSignal);
        return 'found';
      });
      const run = guardRun(e.guard, { runId: 'parent-1', tenant: 'acme' });
      const subModel = new ScriptedModel(toolEveryTurn('lookup', 2));
      let subRunPath: readonly string[] | undefined;
      const research = mastraTool('research', (_i, ctx) =>
        run.child(ctx.agent!.toolCallId, async (sub) => {
          subRunPath = sub.context.runPath;
          const agent = sub.agent({
            ...base,
            id: 's',
            name: 's',
            model: subModel,
            tools: { lookup },
          });
          return (await sub.generate(agent, 'y')).text;
        }),
      );
      const model = new ScriptedModel(toolEveryTurn('research', 3));
      const agent = run.agent({ ...base, id: 'p', name: 'p', model, tools: { research } });
      const p = run.generate(agent, 'x', { maxSteps: 5 }).catch((x: unknown) => x);
      await started.promise;
      expect(subRunPath).toEqual(['parent-1', childRunId('parent-1', 'call-0')]);
      const { seq } = await e.halt({ runId: 'parent-1' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(subSignal?.aborted).toBe(true);
      expect(model.calls).toBe(1);
      expect(subModel.calls).toBe(1);
      let ran = false;
      await expect(
        run.child('call-9', () => {
          ran = true;
        }),
      ).rejects.toBeInstanceOf(HaltedError);
      expect(ran).toBe(false);
    });

    it('a halted parent ends a child whose model response is streaming: the child stream throws the HaltedError', async () => {
      const e = await env();
      const tokens = Array.from({ length: 60 }, (_, i) => `t${i} `);
      const subModel = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'parent-s', tenant: 'acme' });
      let seen = 0;
      const child = run.child('fan-0', async (sub) => {
        const out = await sub.stream(
          sub.agent({ ...base, id: 's', name: 's', model: subModel }),
          'y',
        );
        for await (const _t of out.textStream) seen++;
        return 'finished';
      });
      const settled = child.catch((x: unknown) => x);
      while (seen < 3) await sleep(5);
      const { seq } = await e.halt({ runId: 'parent-s' });
      const err = await settled;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(seen).toBeLessThan(tokens.length);
      await sleep(30);
      expect(subModel.aborts).toHaveLength(1);
    });

    it("a child's tool sends the child's run path and tenant in headers; the service refuses its effect once the parent is halted", async () => {
      const e = await env();
      const ep = await lineageEndpoint(e.guard);
      try {
        const run = guardRun(e.guard, { runId: 'parent-h', tenant: 'acme' });
        const remote = mastraTool('remote', async (_i, { agent, abortSignal }) => {
          const r = await callWithLineage(`${ep.url}/${agent!.toolCallId}`, abortSignal);
          return r.body;
        });
        const research = mastraTool('research', (_i, ctx) =>
          run.child(ctx.agent!.toolCallId, async (sub) => {
            const model = new ScriptedModel(toolEveryTurn('remote', 1));
            const agent = sub.agent({ ...base, id: 's', name: 's', model, tools: { remote } });
            return (await sub.generate(agent, 'y', { maxSteps: 3 })).text;
          }),
        );
        const model = new ScriptedModel(toolEveryTurn('research', 1));
        const agent = run.agent({ ...base, id: 'p', name: 'p', model, tools: { research } });
        await run.generate(agent, 'x', { maxSteps: 3 });
        const child = childRunId('parent-h', 'call-0');
        expect(ep.seen).toEqual([{ tenant: 'acme', runPath: ['parent-h', child] }]);
        await e.halt({ runId: 'parent-h' });
        const after = await runInScope(ep.seen[0]!, () => callWithLineage(`${ep.url}/after`));
        expect(after).toEqual({ status: 409, body: 'KS_HALTED' });
      } finally {
        await ep.close();
      }
    });
  });
});
