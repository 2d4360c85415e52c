/**
 * Entry point of the drill's gateway member (`dist/src/drill/worker/gateway-worker.js`), forked by
 * the drill with an IPC channel like a worker (`worker.js`) and speaking the same messages: it
 * runs a {@link GatewayMember} (a kill-switch gateway and an agent calling through it), reports
 * each flip the gateway applied at once and its events when asked, and exits after `stop`. It has
 * no queue and no run tree: it answers their questions with zeros. KS-9.7
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { systemClock } from '../../internal/clock.js';
import { GatewayMember } from './gateway-member.js';
import type { FromWorker, ToWorker } from '../internal/protocol.js';

function send(msg: FromWorker): void {
  if (process.connected) process.send?.(msg);
}

if (typeof process.send !== 'function') {
  process.stderr.write(
    'drill gateway: must be started by `killswitch drill` (it needs an IPC channel)\n',
  );
  process.exit(2);
}

const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
let member: GatewayMember | undefined;

process.on('message', (raw: unknown) => {
  const msg = raw as ToWorker;
  switch (msg.type) {
    case 'start': {
      if (member) return;
      const config = msg.config;
      member = new GatewayMember(config, {
        applied: (seq, at) => send({ type: 'applied', workerId: config.workerId, seq, at }),
        status: (status, at) => send({ type: 'status', workerId: config.workerId, status, at }),
      });
      member.start().then(
        () => send({ type: 'started', workerId: config.workerId, pid: process.pid }),
        (err: unknown) => {
          send({
            type: 'fatal',
            workerId: config.workerId,
            message: String((err as Error)?.stack ?? err),
          });
          setTimeout(() => process.exit(1), 50);
        },
      );
      return;
    }
    case 'collect': {
      if (!member) return;
      const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
      member.note({
        t: 'loop',
        at: systemClock.now(),
        p50: ms(loop.percentile(50)),
        p99: ms(loop.percentile(99)),
        max: ms(loop.max),
      });
      loop.reset();
      send({
        type: 'collected',
        id: msg.id,
        events: member.collect(),
        counters: { ...member.counters },
      });
      return;
    }
    case 'queue-depth':
      send({
        type: 'queue-depth',
        id: msg.id,
        depth: { at: systemClock.now(), total: 0, matching: 0, held: 0 },
      });
      return;
    case 'tree-shape':
      send({
        type: 'tree-shape',
        id: msg.id,
        shape: { at: systemClock.now(), running: 0, queued: 0, waiting: 0 },
      });
      return;
    case 'child':
      return; // no run tree here
    case 'stop': {
      const m = member;
      const finish = () => {
        send({ type: 'stopped', id: msg.id, counters: m ? { ...m.counters } : ({} as never) });
        setTimeout(() => process.exit(0), 20);
      };
      if (!m) return finish();
      m.stop().then(finish, (err: unknown) => {
        process.stderr.write(`drill gateway: stop failed: ${String(err)}\n`);
        finish();
      });
      return;
    }
  }
});

process.on('disconnect', () => process.exit(1));
