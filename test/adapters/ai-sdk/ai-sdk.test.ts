import { performance } from 'node:perf_hooks';
import { generateText, isStepCount, jsonSchema, tool, type ToolSet } from 'ai';
import { describe, expect, it } from 'vitest';
import { guardRun } from '../../../src/adapters/ai-sdk/index.js';
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

const env = killSwitchEnvPerTest();

const input = jsonSchema<{ amount: number }>({
  type: 'object',
  properties: { amount: { type: 'number' } },
  required: ['amount'],
});

describe('KS-14.2 the Vercel AI SDK adapter (ai 7, scripted model)', () => {
  describe('KS-14.1.1 / KS-14.2.1 each tool call is a guarded effect named after the tool', () => {
    it('maps tool names to capabilities, always hands the tool a signal, and passes tools without execute unchanged', async () => {
      const e = await env();
      await e.halt({ capability: 'crm.lookup' });
      const model = new ScriptedModel(toolEveryTurn('lookup', 1));
      let signal: AbortSignal | undefined;
      const clientSide = tool({ inputSchema: input });
      // (A tool without execute does not fit ToolSet under exactOptionalPropertyTypes.)
      const tools = {
        lookup: tool({
          inputSchema: input,
          execute: async (_i, o) => {
            signal = o.abortSignal;
            return 'found';
          },
        }),
        ask: clientSide,
      } as unknown as ToolSet;
      const run = guardRun(e.guard, { runId: 'run-map', capability: (n) => `crm.${n}` });
      const guarded = run.tools(tools);
      expect(guarded['ask']).toBe(clientSide);
      // The halt names crm.lookup: the mapped capability is the one evaluated.
      await expect(
        run.generateText({ model, tools, prompt: 'x', stopWhen: isStepCount(3) }),
      ).rejects.toMatchObject({ code: 'KS_HALTED' });
      const other = guardRun(e.guard, { runId: 'run-map-2' });
      // No abortSignal passed by the caller: the tool still gets one (the SDK would pass none).
      await other.generateText({
        model: new ScriptedModel(toolEveryTurn('lookup', 1)),
        tools,
        prompt: 'x',
        stopWhen: isStepCount(3),
      });
      expect(signal).toBeInstanceOf(AbortSignal);
      const [entry] = await e.ledger.entries({ runId: 'run-map-2' });
      expect(entry).toMatchObject({
        capability: 'lookup',
        context: { runId: 'run-map-2', capability: 'lookup' },
      });
    });

    it('refuses a string model id and bad options at construction (KS-14.2.2)', async () => {
      const e = await env();
      const run = guardRun(e.guard, { runId: 'run-x' });
      expect(() => run.model('openai/gpt-5')).toThrow(/KS_INVALID_OPTION|option model/);
      expect(() => guardRun(e.guard, { runId: '' })).toThrow(/option runId/);
      expect(() => guardRun(e.guard, { runId: 'r', tenant: 7 as unknown as string })).toThrow(
        /option tenant/,
      );
      expect(() => guardRun({} as never, { runId: 'r' })).toThrow(/option guard/);
    });
  });

  describe('KS-14.1.2 a halted capability refuses the tool and stops the run', () => {
    it('rejects with the HaltedError naming the flip after no further model call; the tool never ran', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'refund' }, 'refunds frozen');
      const model = new ScriptedModel(toolEveryTurn('refund'));
      let ran = 0;
      const tools = {
        refund: tool({ inputSchema: input, execute: async () => ++ran }),
      };
      const run = guardRun(e.guard, { runId: 'run-cap', tenant: 'acme' });
      const err = await run
        .generateText({ model, tools, prompt: 'refund it', stopWhen: isStepCount(4) })
        .catch((x: unknown) => x);
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_HALTED', flip: { seq, reason: 'refunds frozen' } });
      expect(ran).toBe(0);
      expect(model.calls).toBeLessThanOrEqual(2);
      expect(model.calls).toBe(1);
      const [entry] = await e.ledger.entries();
      expect(entry).toMatchObject({ key: effectKey('run-cap', 'call-0'), status: 'refused' });
    });

    it('(control) the same halt through a bare guard.run inside execute lets the SDK call the model again', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      const model = new ScriptedModel(toolEveryTurn('refund'));
      const tools = {
        refund: tool({
          inputSchema: input,
          execute: (_i, o) =>
            e.guard.run(
              {
                context: { tenant: 'acme' },
                runId: 'bare',
                step: o.toolCallId,
                capability: 'refund',
              },
              async () => 1,
            ),
        }),
      };
      const result = await generateText({ model, tools, prompt: 'x', stopWhen: isStepCount(4) });
      // The SDK fed the HaltedError back to the model as a tool error, four times.
      expect(model.calls).toBe(4);
      expect(result.steps.at(-1)?.content.some((p) => p.type === 'tool-error')).toBe(true);
    });

    it('stops the loop even when stopWhen would end it after the refused step (no silent success)', async () => {
      const e = await env();
      await e.halt({ capability: 'refund' });
      const model = new ScriptedModel(toolEveryTurn('refund'));
      const run = guardRun(e.guard, { runId: 'run-one-step' });
      const tools = { refund: tool({ inputSchema: input, execute: async () => 1 }) };
      // generateText's default stopWhen is one step: the SDK itself would resolve normally.
      await expect(run.generateText({ model, tools, prompt: 'x' })).rejects.toBeInstanceOf(
        HaltedError,
      );
    });
  });

  describe('KS-14.1.3 a halt arriving mid-tool aborts the tool at once and frees the caller', () => {
    it('aborts the tool signal within 5 ms of the flip reaching the provider; the caller is freed though the tool ignores it', async () => {
      const e = await env();
      const model = new ScriptedModel(toolEveryTurn('slowTool'));
      const started = deferred();
      let abortedAt = 0;
      let turned = true;
      let finished = false;
      const tools = {
        slowTool: tool({
          inputSchema: input,
          execute: async (_i, { abortSignal }) => {
            abortSignal!.addEventListener('abort', () => {
              abortedAt = performance.now();
              turned = e.turnedSinceArrival();
            });
            started.resolve();
            await sleep(1500); // ignores its signal on purpose
            finished = true;
            return 'late';
          },
        }),
      };
      const run = guardRun(e.guard, { runId: 'run-mid', tenant: 'acme' });
      const p = run
        .generateText({ model, tools, prompt: 'x', stopWhen: isStepCount(4) })
        .catch((x: unknown) => x);
      await started.promise;
      const { arrivedAt, seq } = await e.halt({ tenant: 'acme' });
      const err = await p;
      const freedAt = performance.now();
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
      expect(abortedAt).toBeGreaterThan(0);
      // Aborted within the turn of the event loop that delivered the flip (no timer, no I/O in
      // between): on an idle machine that is well under 5 ms (bench:adapters measures it).
      expect(turned).toBe(false);
      expect(abortedAt).toBeGreaterThanOrEqual(arrivedAt);
      // Freed long before the tool's 1.5 s body ends: the caller did not wait for it.
      expect(freedAt - arrivedAt).toBeLessThan(1000);
      expect(finished).toBe(false);
      expect(model.calls).toBe(1);
      const [entry] = await e.ledger.entries();
      expect(entry?.status).toBe('aborted');
    });
  });

  describe('KS-14.1.4 a halt during a streamed model response ends the stream and the run', () => {
    it('the text stream throws the HaltedError instead of ending silently; no token after the flip', async () => {
      const e = await env();
      const tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
      const model = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'run-stream', tenant: 'acme' });
      const result = run.streamText({ model, prompt: 'x' });
      let seen = 0;
      let afterFlip = 0;
      let flipped = false;
      const consumed = (async () => {
        for await (const _t of result.textStream) {
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
      await expect(result.text).rejects.toBeInstanceOf(HaltedError);
      // The provider's own stream saw its signal abort (the request is cancelled, not drained).
      await sleep(30);
      // The provider's own stream saw its signal abort: it produced at most the token it was on.
      expect(model.aborts).toHaveLength(1);
      expect(model.tokens - tokensBefore).toBeLessThanOrEqual(1);
    });

    it('generateText with an in-flight model call rejects with the HaltedError', async () => {
      const e = await env();
      const started = deferred();
      const model = new ScriptedModel(() => ({ text: ['never'] }));
      const slow = {
        ...model,
        specificationVersion: 'v4' as const,
        provider: 'slow',
        modelId: 'slow',
        supportedUrls: {},
        doStream: model.doStream.bind(model),
        async doGenerate(o: Parameters<ScriptedModel['doGenerate']>[0]) {
          started.resolve();
          await sleep(2000, o.abortSignal);
          return model.doGenerate(o);
        },
      };
      const run = guardRun(e.guard, { runId: 'run-gen', tenant: 'acme' });
      const p = run.generateText({ model: slow, prompt: 'x' }).catch((x: unknown) => x);
      await started.promise;
      const t0 = performance.now();
      await e.halt({ tenant: 'acme' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect(performance.now() - t0).toBeLessThan(1000); // not the 2 s the model would take
    });

    it('a model capability halt refuses the next model call', async () => {
      const e = await env();
      const { seq } = await e.halt({ capability: 'llm' });
      const model = new ScriptedModel(() => ({ text: ['x'] }));
      const run = guardRun(e.guard, { runId: 'run-llm' });
      await expect(run.generateText({ model, prompt: 'x' })).rejects.toMatchObject({
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
      const tools: ToolSet = {
        email: tool({
          inputSchema: input,
          execute: async ({ amount }) => ({ sent: ++sent, amount }),
        }),
      };
      const script = toolEveryTurn('email', 2);
      const first = await guardRun(e.guard, { runId: 'run-r', tenant: 'acme' }).generateText({
        model: new ScriptedModel(script),
        tools,
        prompt: 'x',
        stopWhen: isStepCount(5),
      });
      expect(sent).toBe(2);
      const entries = await e.ledger.entries({ runId: 'run-r' });
      expect(entries.map((x) => [x.key, x.history.map((h) => h.status)])).toEqual([
        [effectKey('run-r', 'call-0'), ['intent', 'landed']],
        [effectKey('run-r', 'call-1'), ['intent', 'landed']],
      ]);
      expect(entries[0]).toMatchObject({ capability: 'email', result: { sent: 1, amount: 10 } });
      // The same run again (a resume after a crash replays the same tool calls): nothing is sent.
      const again = await guardRun(e.guard, { runId: 'run-r', tenant: 'acme' }).generateText({
        model: new ScriptedModel(script),
        tools,
        prompt: 'x',
        stopWhen: isStepCount(5),
      });
      expect(sent).toBe(2);
      expect(again.steps.map((s) => s.toolResults.map((r) => r.output))).toEqual(
        first.steps.map((s) => s.toolResults.map((r) => r.output)),
      );
    });
  });

  describe("KS-14.1.7 an unrelated tenant's run keeps going", () => {
    it('halting tenant acme stops its run while tenant globex completes every step', async () => {
      const e = await env();
      const gate = deferred();
      const landed: string[] = [];
      const tools = (tenant: string) => ({
        work: tool({
          inputSchema: input,
          execute: async (_i, { toolCallId, abortSignal }) => {
            if (toolCallId === 'call-1') await gate.promise;
            abortSignal!.throwIfAborted();
            landed.push(`${tenant}/${toolCallId}`);
            return 'ok';
          },
        }),
      });
      const acmeRun = guardRun(e.guard, { runId: 'run-a', tenant: 'acme' });
      const acme = acmeRun
        .generateText({
          model: new ScriptedModel(toolEveryTurn('work', 3)),
          tools: tools('acme'),
          prompt: 'x',
          stopWhen: isStepCount(5),
        })
        .catch((x: unknown) => x);
      const globex = guardRun(e.guard, { runId: 'run-g', tenant: 'globex' }).generateText({
        model: new ScriptedModel(toolEveryTurn('work', 3)),
        tools: tools('globex'),
        prompt: 'x',
        stopWhen: isStepCount(5),
      });
      while (landed.length < 2) await sleep(2);
      await e.halt({ tenant: 'acme' });
      // The flip reached the provider; the guard re-evaluates and aborts a moment later.
      while (!acmeRun.signal.aborted) await sleep(1);
      gate.resolve();
      expect(await acme).toBeInstanceOf(HaltedError);
      const g = await globex;
      expect(g.text).toBe('done');
      expect(landed.filter((l) => l.startsWith('globex/'))).toEqual([
        'globex/call-0',
        'globex/call-1',
        'globex/call-2',
      ]);
      expect(landed.filter((l) => l.startsWith('acme/'))).toEqual(['acme/call-0']);
    });
  });

  describe('KS-14.1.6 a sub-agent called from a tool is a child run; a halted parent stops it', () => {
    it('halting the parent run aborts the sub-agent tool in flight, ends both runs with the HaltedError, and refuses a later spawn', async () => {
      const e = await env();
      const started = deferred();
      const lookedUp: string[] = [];
      let subSignal: AbortSignal | undefined;
      const subTools = {
        lookup: tool({
          inputSchema: input,
          execute: async (_i, { abortSignal }) => {
            subSignal = abortSignal;
            started.resolve();
            await sleep(1500, abortSignal);
            lookedUp.push('late');
            return 'found';
          },
        }),
      };
      const run = guardRun(e.guard, { runId: 'parent-1', tenant: 'acme' });
      const subModel = new ScriptedModel(toolEveryTurn('lookup', 2));
      let subRunPath: readonly string[] | undefined;
      const tools = {
        research: tool({
          inputSchema: input,
          execute: (_i, { toolCallId }) =>
            run.child(toolCallId, (sub) => {
              subRunPath = sub.context.runPath;
              return sub
                .generateText({ model: subModel, tools: subTools, prompt: 'y' })
                .then((r) => r.text);
            }),
        }),
      };
      const model = new ScriptedModel(toolEveryTurn('research', 3));
      const p = run
        .generateText({ model, tools, prompt: 'x', stopWhen: isStepCount(5) })
        .catch((x: unknown) => x);
      await started.promise;
      expect(subRunPath).toEqual(['parent-1', childRunId('parent-1', 'call-0')]);
      // The sub-agent's tool effect is keyed and evaluated under the child run.
      const [childEntry] = await e.ledger.entries({ runId: childRunId('parent-1', 'call-0') });
      expect(childEntry?.context).toMatchObject({ tenant: 'acme', runPath: subRunPath });
      const { seq } = await e.halt({ runId: 'parent-1' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect((err as HaltedError).flip?.seq).toBe(seq);
      expect(subSignal?.aborted).toBe(true);
      expect(model.calls).toBe(1); // the parent's model was not asked again
      expect(subModel.calls).toBe(1);
      await sleep(20);
      expect(lookedUp).toEqual([]);
      // A child spawned after the halt is refused before it runs.
      let ran = false;
      await expect(
        run.child('call-9', () => {
          ran = true;
        }),
      ).rejects.toBeInstanceOf(HaltedError);
      expect(ran).toBe(false);
    });

    it('a run created inside a run scope takes its run, tenant and path from it; an unrelated tenant keeps going', async () => {
      const e = await env();
      await e.halt({ tenant: 'acme' });
      const tools = { work: tool({ inputSchema: input, execute: async () => 'ok' }) };
      const refused = runInScope({ tenant: 'acme', runPath: ['root-a', 'kid-a'] }, () => {
        const r = guardRun(e.guard);
        expect(r.context).toEqual({ tenant: 'acme', runId: 'kid-a', runPath: ['root-a', 'kid-a'] });
        return r.generateText({
          model: new ScriptedModel(toolEveryTurn('work', 1)),
          tools,
          prompt: 'x',
        });
      });
      await expect(refused).rejects.toBeInstanceOf(HaltedError);
      const ok = await runInScope({ tenant: 'globex', runPath: ['root-g'] }, () =>
        guardRun(e.guard).generateText({
          model: new ScriptedModel(toolEveryTurn('work', 2)),
          tools,
          prompt: 'x',
          stopWhen: isStepCount(5),
        }),
      );
      expect(ok.text).toBe('done');
      // A tenant that contradicts the scope is refused (it would escape the scope's halts).
      expect(() =>
        runInScope({ tenant: 'acme', runPath: ['root-x'] }, () =>
          guardRun(e.guard, { tenant: 'globex' }),
        ),
      ).toThrow(/tenant/);
    });
  });

  describe('KS-14.1.6 child runs: a streaming child stops with its parent, and the lineage crosses in headers', () => {
    it("a halted parent ends a child whose model response is streaming: the child's stream throws the HaltedError and the provider stream is aborted", async () => {
      const e = await env();
      const tokens = Array.from({ length: 60 }, (_, i) => `t${i} `);
      const subModel = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'parent-s', tenant: 'acme' });
      let seen = 0;
      const child = run
        .child('fan-0', async (sub) => {
          for await (const _t of sub.streamText({ model: subModel, prompt: 'y' }).textStream)
            seen++;
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

    it("a child's tool sends the child's run path and tenant in headers; the service refuses its effect once the parent is halted", async () => {
      const e = await env();
      const ep = await lineageEndpoint(e.guard);
      try {
        const run = guardRun(e.guard, { runId: 'parent-h', tenant: 'acme' });
        const answers: string[] = [];
        const subTools = {
          remote: tool({
            inputSchema: input,
            execute: async (_i, { toolCallId, abortSignal }) => {
              const r = await callWithLineage(`${ep.url}/${toolCallId}`, abortSignal);
              answers.push(r.body);
              return r.body;
            },
          }),
        };
        const tools = {
          research: tool({
            inputSchema: input,
            execute: (_i, { toolCallId }) =>
              run.child(toolCallId, (sub) =>
                sub
                  .generateText({
                    model: new ScriptedModel(toolEveryTurn('remote', 1)),
                    tools: subTools,
                    prompt: 'y',
                    stopWhen: isStepCount(3),
                  })
                  .then((r) => r.text),
              ),
          }),
        };
        await run.generateText({
          model: new ScriptedModel(toolEveryTurn('research', 1)),
          tools,
          prompt: 'x',
          stopWhen: isStepCount(3),
        });
        const child = childRunId('parent-h', 'call-0');
        expect(ep.seen).toEqual([{ tenant: 'acme', runPath: ['parent-h', child] }]);
        expect(answers).toEqual(['landed']);
        await e.halt({ runId: 'parent-h' });
        // The other process acts for the child's lineage: the parent's halt refuses it there.
        const after = await runInScope(ep.seen[0]!, () => callWithLineage(`${ep.url}/after`));
        expect(after).toEqual({ status: 409, body: 'KS_HALTED' });
      } finally {
        await ep.close();
      }
    });
  });

  describe('KS-14.2.3 generateText, streamText and settle run under the run: guarded model, merged signal, streams that end with the HaltedError', () => {
    it('fullStream ends with the HaltedError; the provider stream is aborted', async () => {
      const e = await env();
      const tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
      const model = new ScriptedModel(() => ({ text: tokens, tokenMs: 10 }));
      const run = guardRun(e.guard, { runId: 'run-full', tenant: 'acme' });
      const result = run.streamText({ model, prompt: 'x' });
      let deltas = 0;
      const consumed = (async () => {
        for await (const part of result.fullStream) if (part.type === 'text-delta') deltas++;
      })().catch((x: unknown) => x);
      while (deltas < 3) await sleep(5);
      const { seq } = await e.halt({ runId: 'run-full' });
      const err = await consumed;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      await sleep(30);
      expect(model.aborts).toHaveLength(1);
    });

    it("the caller's own abortSignal still reaches the model (merged with the run's)", async () => {
      const e = await env();
      const started = deferred();
      let modelSignal: AbortSignal | undefined;
      const model = new ScriptedModel(() => ({ text: ['never'] }));
      const slow = {
        ...model,
        specificationVersion: 'v4' as const,
        provider: 'slow',
        modelId: 'slow',
        supportedUrls: {},
        doStream: model.doStream.bind(model),
        async doGenerate(o: Parameters<ScriptedModel['doGenerate']>[0]) {
          modelSignal = o.abortSignal;
          started.resolve();
          await sleep(2000, o.abortSignal);
          return model.doGenerate(o);
        },
      };
      const mine = new AbortController();
      const run = guardRun(e.guard, { runId: 'run-own', tenant: 'acme' });
      const p = run
        .generateText({ model: slow, prompt: 'x', abortSignal: mine.signal })
        .catch((x: unknown) => x);
      await started.promise;
      expect(modelSignal?.aborted).toBe(false);
      mine.abort(new Error('caller gave up'));
      const err = await p;
      expect(err).not.toBeInstanceOf(HaltedError);
      expect(modelSignal?.aborted).toBe(true);
    });

    it("settle hands the call the run's signal, rejects with the HaltedError whatever the call made of the abort, and never calls it under a halt", async () => {
      const e = await env();
      const run = guardRun(e.guard, { runId: 'run-settle', tenant: 'acme' });
      const started = deferred();
      // A framework that swallows the abort and returns a short answer, as if it were complete.
      const p = run
        .settle(
          (s) =>
            new Promise<string>((resolve) => {
              started.resolve();
              s.addEventListener('abort', () => resolve('partial answer'));
            }),
        )
        .catch((x: unknown) => x);
      await started.promise;
      const { seq } = await e.halt({ tenant: 'acme' });
      const err = await p;
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ flip: { seq } });
      let called = false;
      const again = guardRun(e.guard, { runId: 'run-settle-2', tenant: 'acme' });
      await expect(
        again.settle(() => {
          called = true;
          return 'x';
        }),
      ).rejects.toMatchObject({ code: 'KS_HALTED', flip: { seq } });
      expect(called).toBe(false);
    });

    it('settle frees its caller the moment the run stops, even when the call ignores its signal (KS-14.1.2)', async () => {
      const e = await env();
      const run = guardRun(e.guard, { runId: 'run-settle-deaf', tenant: 'acme' });
      const started = deferred();
      const release = deferred();
      // A framework call that never looks at its signal and ends only when told to.
      const p = run
        .settle(async () => {
          started.resolve();
          await release.promise;
          return 'finished anyway';
        })
        .catch((x: unknown) => x);
      await started.promise;
      const { seq } = await e.halt({ tenant: 'acme' });
      const err = await p; // without release: resolved by the stop alone
      expect(err).toBeInstanceOf(HaltedError);
      expect(err).toMatchObject({ code: 'KS_ABORTED', flip: { seq } });
      release.resolve();
    });
  });
});
