import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';

/**
 * The Redis the tests use (127.0.0.1:6379; `KS_TEST_REDIS_PORT` overrides the port, e.g. to check
 * that a missing Redis fails in CI); each test gets its own key prefix.
 */
export const REDIS = {
  host: '127.0.0.1',
  port: Number(process.env.KS_TEST_REDIS_PORT ?? 6379),
  maxRetriesPerRequest: null,
} as const;

/**
 * Sends one command over RESP and returns the first reply line (enough for PING and EVAL with
 * an integer reply). A raw socket keeps the tests free of a direct ioredis dependency.
 */
function command(args: readonly string[], timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: REDIS.host, port: REDIS.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('redis: timeout'));
    }, timeoutMs);
    let buf = '';
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (d) => {
      buf += d.toString('utf8');
      const i = buf.indexOf('\r\n');
      if (i >= 0) {
        clearTimeout(timer);
        socket.end();
        resolve(buf.slice(0, i));
      }
    });
    socket.on('connect', () => {
      socket.write(
        `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`,
      );
    });
  });
}

/** True when Redis answers PING. */
export async function redisUp(): Promise<boolean> {
  try {
    return (await command(['PING'])) === '+PONG';
  } catch {
    return false;
  }
}

/**
 * Resolves whether the Redis tests can run: in CI (`CI=true`) a missing Redis is an error that
 * fails the file, never a silent skip.
 */
export async function requireRedis(): Promise<boolean> {
  const up = await redisUp();
  if (!up && process.env.CI === 'true') {
    throw new Error(
      `Redis at 127.0.0.1:${REDIS.port} is required when CI=true (the BullMQ tests need it)`,
    );
  }
  return up;
}

/** A key prefix unique to one test. */
export function testPrefix(file: string): string {
  return `ks-test-${file}-${randomUUID().slice(0, 8)}`;
}

/** Deletes every key under a prefix (test keys only: the prefix is unique per test). */
export async function deletePrefix(prefix: string): Promise<void> {
  const script =
    "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n";
  await command(['EVAL', script, '0', `${prefix}:*`]);
}
