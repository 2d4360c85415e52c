import { afterAll, describe, it } from 'vitest';
import { BullMqTaskQueue } from '../../providers/bullmq/index.js';
import { describeQueueControl, type Payload } from './queue-control.suite.js';
import { REDIS, deletePrefix, requireRedis, testPrefix } from './redis-test-env.js';

// KS-7.3.5: with CI=true a missing Redis fails this file instead of skipping it.
const up = await requireRedis();
const prefixes: string[] = [];

afterAll(async () => {
  if (up) for (const p of prefixes) await deletePrefix(p);
});

if (up) {
  describeQueueControl('KS-7.3 BullMqTaskQueue', {
    create: async () => {
      const prefix = testPrefix('bullmq');
      prefixes.push(prefix);
      return new BullMqTaskQueue<Payload>({
        name: 'jobs',
        prefix,
        connection: REDIS,
        logger: { warn: () => undefined },
      });
    },
  });
} else {
  describe.skip('KS-7.3 BullMqTaskQueue (Redis not running at 127.0.0.1:6379; set CI=true to fail instead)', () => {
    it('needs Redis', () => undefined);
  });
}
