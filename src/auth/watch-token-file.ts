import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import type { TokenAuthenticator, TokenSpec } from './token-authenticator.js';

/** Options of {@link watchTokenFile}. Times in milliseconds. */
export interface WatchTokenFileOptions {
  /** The authenticator whose token set is replaced. */
  readonly auth: TokenAuthenticator;
  /** The token file. Its folder is watched, so a file replaced by rename (editors, Kubernetes) is seen. */
  readonly file: string;
  /** Loads the whole token set again (`loadTokens` with the options used at start). */
  readonly load: () => Promise<readonly TokenSpec[]>;
  /** Reload on SIGHUP too. @default true */
  readonly sighup?: boolean;
  /** Settle time after a change before reading (editors write in steps). @default 100 */
  readonly debounceMs?: number;
  /** Also compare the file every this often (file systems without change events). @default 5000 */
  readonly pollMs?: number;
  /** Told after each reload that changed the token set, with the number of tokens. */
  readonly onReload?: (count: number) => void;
  /** Told when a reload failed; the token set in force is kept. */
  readonly onError?: (err: Error) => void;
}

/** A running {@link watchTokenFile}. */
export interface TokenFileWatcher {
  /** Reloads now. @returns false when the reload failed (the token set in force is kept) */
  reload(): Promise<boolean>;
  /** Stops watching (and listening for SIGHUP). */
  close(): void;
}

/**
 * Reloads the tokens when the token file changes or the process gets SIGHUP, so revoking or
 * rotating a token needs no restart (KS-17.3.1). The new set replaces the old one whole
 * (`TokenAuthenticator.replace`): removed and changed tokens stop authenticating at once and their
 * open streams end. A file that does not load (bad JSON, a bad entry, a mode that exposes secrets)
 * is refused whole and the tokens in force are kept, with `onError`: revoking by breaking the file
 * would otherwise lock everyone out of the kill switch.
 *
 * @throws {InvalidOptionError} `KS_INVALID_OPTION` for bad options
 * @example
 * ```ts
 * const w = watchTokenFile({ auth, file, load: async () => (await loadTokens(opts)).tokens,
 *   onError: (e) => console.error(e.message) });
 * ```
 */
export function watchTokenFile(options: WatchTokenFileOptions): TokenFileWatcher {
  const { auth, file, load } = options;
  if (typeof auth?.replace !== 'function') {
    throw new InvalidOptionError('auth', 'a TokenAuthenticator', auth);
  }
  if (typeof file !== 'string' || file === '') {
    throw new InvalidOptionError('file', 'a file path', file);
  }
  if (typeof load !== 'function') throw new InvalidOptionError('load', 'a function', load);
  const debounceMs = options.debounceMs ?? 100;
  const pollMs = options.pollMs ?? 5000;
  for (const [name, v] of [
    ['debounceMs', debounceMs],
    ['pollMs', pollMs],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new InvalidOptionError(name, 'a non-negative integer (ms)', v);
    }
  }
  let closed = false;
  let lastText: string | undefined;
  let running: Promise<boolean> | undefined;
  let again = false;
  let timer: NodeJS.Timeout | undefined;

  const readText = () => readFile(file, 'utf8').catch(() => undefined);
  void readText().then((t) => {
    lastText ??= t;
  });

  const reloadOnce = async (): Promise<boolean> => {
    try {
      const text = await readText();
      const tokens = await load();
      auth.replace(tokens);
      lastText = text;
      options.onReload?.(auth.size);
      return true;
    } catch (err) {
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  };
  // One reload at a time; a change during a reload triggers one more after it.
  const reload = (): Promise<boolean> => {
    if (running !== undefined) {
      again = true;
      return running;
    }
    running = (async () => {
      let ok: boolean;
      do {
        again = false;
        ok = await reloadOnce();
      } while (again && !closed);
      running = undefined;
      return ok;
    })();
    return running;
  };
  /** Reloads when the file's text changed (events also fire for unrelated files and no-ops). */
  const check = async (): Promise<void> => {
    if (closed) return;
    const text = await readText();
    if (text !== lastText) await reload();
  };
  const soon = (): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void check(), debounceMs);
  };

  let watcher: FSWatcher | undefined;
  try {
    // Any event in the folder: Kubernetes swaps a `..data` symlink, editors write a temporary
    // file and rename it; `check` compares the text, so unrelated events cost one read.
    watcher = watch(dirname(file), { persistent: false }, () => soon());
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined; // the poll still catches changes
  }
  const poll = pollMs > 0 ? setInterval(() => void check(), pollMs) : undefined;
  poll?.unref();
  const onHup = (): void => void reload();
  if (options.sighup !== false) process.on('SIGHUP', onHup);

  return {
    reload,
    close() {
      closed = true;
      clearTimeout(timer);
      if (poll !== undefined) clearInterval(poll);
      watcher?.close();
      if (options.sighup !== false) process.off('SIGHUP', onHup);
    },
  };
}
