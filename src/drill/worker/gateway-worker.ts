/**
 * Entry point of the drill's gateway member (`dist/src/drill/worker/gateway-worker.js`), forked by
 * the drill with an IPC channel like a worker (`worker.js`) and speaking the same messages
 * ({@link serveDrillMember}): it runs a {@link GatewayMember} (a kill-switch gateway and an agent
 * calling through it). It has no queue, no run tree and no held calls: it answers those questions
 * with zeros. KS-9.7
 */
import { GatewayMember } from './gateway-member.js';
import { serveDrillMember } from './member-process.js';

serveDrillMember('drill gateway', (config, report) => new GatewayMember(config, report));
