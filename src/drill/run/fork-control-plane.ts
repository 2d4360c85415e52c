import { fork } from 'node:child_process';
import type { TokenSpec } from '../../auth/token-authenticator.js';

/** Forks the embedded control plane and waits for its URL. */
export async function forkControlPlane(
  script: string,
  config: {
    dataDir: string;
    staleAfterMs: number;
    heartbeatMs: number;
    /** The tokens it accepts (sent over the IPC channel, never on a command line). */
    tokens: readonly TokenSpec[];
    /** Its signing key, PKCS#8 PEM (sent over the IPC channel only, never written to disk). */
    signingKeyPem?: string;
  },
): Promise<{ url: string; pid: number | undefined; stop(): Promise<void> }> {
  const child = fork(script, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`embedded control plane did not start: ${stderr}`)),
      30_000,
    );
    child.on('message', (m: { type?: string; url?: string; message?: string }) => {
      if (m.type === 'ready' && typeof m.url === 'string') {
        clearTimeout(timer);
        resolve(m.url);
      } else if (m.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(`embedded control plane failed: ${m.message ?? ''}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`embedded control plane exited (${code}): ${stderr}`));
    });
    child.send({ type: 'start', ...config });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return {
    url,
    pid: child.pid,
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
