import { systemClock, type Clock } from '../internal/clock.js';
import { access, open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { Role, type Principal } from '../auth/principal.js';
import { ErrorCode, InvalidOptionError, KillSwitchError, ValidationError } from '../errors.js';
import { Mutex } from '../internal/mutex.js';
import { chainRelease, releaseChainBreak, releaseHead } from '../integrity/release-chain.js';
import { PublicKeyRing, type SigningKey } from '../integrity/signing-key.js';
import { toIssues } from '../internal/zod-issues.js';
// The flip log's lock: one control plane appends to a release file at a time.
import { LockFile } from '../internal/lock-file.js';
import { releaseNameSchema } from '../protocol/acks.js';
import type { WorkerInfo } from '../protocol/answers.js';
import { ApiPath } from '../protocol/paths.js';
import {
  ReleaseStatus,
  releaseRequestSchema,
  type ReleaseRecord,
  type ReleaseRequest,
  type ReleasesAnswer,
} from '../protocol/releases.js';
import { sendJson } from './internal/http-io.js';
import type { Route } from './router.js';
import type { ReleaseLogStore, SharedReleaseLog } from '../store/release-log.js';
import { stripUndefined } from '../internal/strip-undefined.js';

export {
  ReleaseStatus,
  releaseRequestSchema,
  type ReleaseRecord,
  type ReleaseRequest,
  type ReleasesAnswer,
} from '../protocol/releases.js';

const releaseRecordSchema = z.strictObject({
  seq: z.number().int().min(1),
  release: releaseNameSchema,
  status: z.enum([ReleaseStatus.GREEN, ReleaseStatus.RED, 'override']),
  reason: z.string().optional(),
  flip: z.string().optional(),
  actor: z.string().min(1),
  at: z.string(),
  prev: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  hash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  sig: z.string().max(200).optional(),
});

/**
 * Reads a release file (`releases.jsonl`) and checks it as the gate's open does: every complete
 * line must be a verdict, and the verdicts must chain (and, with `ring`, verify, KS-17.7.6). A last
 * line without its newline is a write that never completed: it is left out (`end` < `length`).
 * A missing file has no verdicts.
 *
 * @throws {KillSwitchError} `KS_JOURNAL_CORRUPT` naming the line; a read error passes through
 */
export async function readReleaseFile(
  path: string,
  ring: PublicKeyRing | undefined,
): Promise<{ records: ReleaseRecord[]; end: number; length: number }> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    buf = Buffer.alloc(0);
  }
  const end = buf.lastIndexOf(0x0a) + 1;
  const text = buf.subarray(0, end).toString('utf8');
  const lines = text === '' ? [] : text.slice(0, -1).split('\n');
  const records: ReleaseRecord[] = [];
  lines.forEach((line, i) => {
    let rec: ReleaseRecord;
    try {
      rec = stripUndefined(releaseRecordSchema.parse(JSON.parse(line))) as unknown as ReleaseRecord;
    } catch (err) {
      throw new KillSwitchError(
        ErrorCode.JOURNAL_CORRUPT,
        `release file ${path} corrupt at line ${i + 1}: ${(err as Error).message}`,
      );
    }
    records.push(rec);
  });
  // KS-17.7.6 verdicts are chained like flips: a broken chain refuses the open.
  const broken = releaseChainBreak(records, ring);
  if (broken !== undefined) {
    throw new KillSwitchError(
      ErrorCode.JOURNAL_CORRUPT,
      `release file ${path} corrupt at line ${broken.line}: ${broken.reason} (KS-17.7.6)`,
    );
  }
  return { records, end, length: buf.length };
}

/** Options of {@link ReleaseGate}. */
export interface ReleaseGateOptions {
  /**
   * The JSON-lines file the verdicts are kept in (one per line, fsync'ed before the answer); its
   * folder must exist. Absent: kept in memory only (tests, demos). Not used when the gate is
   * opened on a store that shares verdicts (PostgreSQL, KS-8.9): see {@link ReleaseGate.open}.
   */
  readonly path?: string;
  /** fdatasync each verdict. @default true */
  readonly fsync?: boolean;
  /** Clock: its wall reading stamps release records. @default systemClock */
  readonly clock?: Clock;
  /** Told when a torn last line is cut. @default console */
  readonly logger?: { warn(message: string): void };
  /** Sign each verdict (KS-17.7.6); its public key also checks the file on open. @default unsigned */
  readonly signingKey?: SigningKey;
  /** Keys the verdicts' signatures must verify under on open. @default the signing key's */
  readonly publicKeys?: PublicKeyRing;
}

/**
 * Gated resume (DESIGN section 7): which releases are green or red, and the check a resume must
 * pass. KS-10.5
 *
 * - a resume MUST name a release; it is refused (`KS_RESUME_REFUSED`, HTTP 409, with the reason)
 *   when that release's latest verdict is not `green`, or while any connected worker (an open
 *   stream, or a lease still running) reports a release whose latest verdict is `red`;
 * - verdicts are appended to a JSON-lines file (fsync'ed) next to the flip log and the latest per
 *   release counts; marking one needs the admin role (a release verdict lifts the gate for every
 *   selector, so no scoped operator may give it);
 * - on a flip log that replicas share (PostgreSQL) the control plane opens the gate on the store
 *   instead (KS-8.9): verdicts and overrides go to its `releases` table, and every check reads
 *   what any replica recorded first, so every replica gives the same answer.
 *
 * @example
 * ```ts
 * const releases = new ReleaseGate({ path: join(dataDir, 'releases.jsonl') });
 * const cp = await startControlPlane({ store, releaseGate: releases });
 * ```
 */
export class ReleaseGate {
  readonly path: string | undefined;
  readonly #fsync: boolean;
  readonly #clock: Clock;
  readonly #logger: { warn(message: string): void };
  readonly #mutex = new Mutex();
  readonly #latest = new Map<string, ReleaseRecord>();
  #seq = 0;
  #last: ReleaseRecord | undefined;
  /** Whether a verdict read so far was signed (every later one must be, KS-17.7.6). */
  #signed = false;
  /** The store's shared verdicts, when the gate was opened on one (KS-8.9). */
  #shared: SharedReleaseLog | undefined;
  #sharedStore: ReleaseLogStore | undefined;
  /** A broken chain read from the shared store: the gate refuses every resume from then on. */
  #failure: KillSwitchError | undefined;
  readonly #key: SigningKey | undefined;
  readonly #ring: PublicKeyRing | undefined;
  #opening: Promise<void> | undefined;
  #fh: FileHandle | undefined;
  #lock: LockFile | undefined;
  #closed = false;

  /** @throws {InvalidOptionError} `KS_INVALID_OPTION` */
  constructor(options: ReleaseGateOptions = {}) {
    if (options.path !== undefined && (typeof options.path !== 'string' || options.path === ''))
      throw new InvalidOptionError('path', 'a non-empty file path', options.path);
    if (options.fsync !== undefined && typeof options.fsync !== 'boolean')
      throw new InvalidOptionError('fsync', 'a boolean', options.fsync);
    this.path = options.path;
    this.#fsync = options.fsync ?? true;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? console;
    this.#key = options.signingKey;
    this.#ring =
      options.signingKey === undefined
        ? options.publicKeys
        : (options.publicKeys?.including(options.signingKey) ??
          PublicKeyRing.of(options.signingKey));
  }

  /**
   * Reads the file and takes its lock (one control plane per file); idempotent. KS-10.5.2
   *
   * Given a store that shares verdicts (`shared`, the control plane's PostgreSQL store), the gate
   * keeps them there instead of in its file (KS-8.9): the file is neither read nor locked, and
   * verdicts still in it are not carried over (a warning names them; a resume on a release with
   * no verdict in the store is refused until it is marked again). The first `open` decides.
   *
   * @throws {KillSwitchError} `KS_STORE_UNAVAILABLE` (unreadable, locked), `KS_JOURNAL_CORRUPT`
   * @throws {InvalidOptionError} `KS_INVALID_OPTION` when the gate was already opened on its file
   *   and now a shared store is given (or another one)
   */
  open(shared?: ReleaseLogStore): Promise<void> {
    if (this.#closed)
      return Promise.reject(new KillSwitchError(ErrorCode.STORE_CLOSED, 'release gate is closed'));
    if (this.#opening !== undefined && shared !== undefined && this.#sharedStore !== shared) {
      return Promise.reject(
        new InvalidOptionError(
          'releaseGate',
          'a release gate that was not opened before the control plane started (its store shares release verdicts)',
          this.#sharedStore === undefined ? `opened on ${this.path ?? 'memory'}` : 'another store',
        ),
      );
    }
    if (this.#opening === undefined) this.#sharedStore = shared;
    this.#opening ??= (shared === undefined ? this.#open() : this.#openShared(shared)).catch(
      (err: unknown) => {
        this.#opening = undefined;
        this.#sharedStore = undefined;
        this.#shared = undefined;
        throw err;
      },
    );
    return this.#opening;
  }

  /** KS-8.9 the verdicts live in the store every replica shares. */
  async #openShared(store: ReleaseLogStore): Promise<void> {
    this.#shared = await store.openReleaseLog();
    if (this.path !== undefined) {
      const left = await readFile(this.path, 'utf8').then(
        (text) => text.split('\n').filter((l) => l.trim() !== '').length,
        () => 0,
      );
      if (left > 0) {
        this.#logger.warn(
          `release verdicts are kept in ${this.#shared.description}, shared by every replica (KS-8.9); the ${left} line(s) in ${this.path} are not read: carry them over with killswitch db import-releases ${this.path} --store <url> (KS-8.9.5), or mark the releases you resume on again`,
        );
      }
    }
    await this.#sync();
  }

  /**
   * Reads what any replica recorded since the last read (shared store only), checking the chain
   * and signatures as the file's open does. Every check calls it first, so a verdict given on
   * one replica counts on all from the moment its answer was sent.
   */
  async #sync(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const shared = this.#shared;
    if (shared === undefined) return;
    await this.#mutex.run(async () => this.#ingest(await shared.read(this.#seq)));
  }

  /** Checks verdicts read from the shared store and applies them; a broken chain fails the gate. */
  #ingest(newer: readonly ReleaseRecord[]): void {
    if (this.#failure !== undefined) throw this.#failure;
    const where = this.#shared?.description ?? 'the store';
    const records: ReleaseRecord[] = [];
    for (const raw of newer) {
      const parsed = releaseRecordSchema.safeParse(raw);
      if (!parsed.success) {
        throw this.#failWith(
          `release verdicts in ${where} corrupt at seq ${raw.seq}: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
        );
      }
      records.push(stripUndefined(parsed.data) as unknown as ReleaseRecord);
    }
    // KS-17.7.6 a verdict that does not extend the chain (or is not signed after signed ones)
    // was not recorded by a control plane: refuse every resume until an operator looks.
    const broken = releaseChainBreak(
      records,
      this.#ring,
      this.#last === undefined ? undefined : { last: this.#last, signed: this.#signed },
    );
    if (broken !== undefined) {
      throw this.#failWith(
        `release verdicts in ${where} corrupt at seq ${broken.line}: ${broken.reason} (KS-17.7.6)`,
      );
    }
    for (const rec of records) this.#apply(rec);
  }

  #failWith(message: string): KillSwitchError {
    this.#failure ??= new KillSwitchError(
      ErrorCode.JOURNAL_CORRUPT,
      `${message}; the release gate refuses every resume until it is repaired`,
    );
    return this.#failure;
  }

  async #open(): Promise<void> {
    if (this.path === undefined) return;
    const path = this.path;
    try {
      await access(dirname(path));
      this.#lock = await LockFile.acquire(`${path}.lock`, (m) => this.#logger.warn(m));
      const { records, end, length } = await readReleaseFile(path, this.#ring);
      for (const rec of records) this.#apply(rec);
      if (end < length) {
        // A crash mid-write: that verdict was never acknowledged.
        await truncate(path, end);
        this.#logger.warn(`release file ${path}: cut a torn last line`);
      }
      this.#fh = await open(path, 'a');
    } catch (err) {
      await this.#lock?.release().catch(() => undefined);
      this.#lock = undefined;
      if (err instanceof KillSwitchError) throw err;
      throw new KillSwitchError(
        ErrorCode.STORE_UNAVAILABLE,
        `cannot open the release file ${path}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  #apply(r: ReleaseRecord): void {
    this.#seq = Math.max(this.#seq, r.seq);
    this.#last = r;
    if (r.sig !== undefined) this.#signed = true;
    if (r.status === 'override') return; // an override changes no release's verdict
    this.#latest.set(r.release, r);
  }

  /**
   * Records a verdict; resolves once it is durable. KS-10.5.1
   *
   * @throws {ValidationError} `KS_INVALID_INPUT`; {@link KillSwitchError} `KS_STORE_UNAVAILABLE`
   */
  async record(input: ReleaseRequest, actor: string): Promise<ReleaseRecord> {
    const parsed = releaseRequestSchema.safeParse(input);
    if (!parsed.success) throw new ValidationError('release', toIssues(parsed.error));
    return this.#append({ ...parsed.data }, actor);
  }

  /**
   * Lets a resume through the gate on an admin's word (KS-17.2.3): refuses anyone else (403),
   * records `{ status: 'override', release, reason, flip, actor }` durably (chained, signed) before
   * the resume is appended, and changes no release's verdict. Without `reason`, the gate's check.
   *
   * @throws {KillSwitchError} `KS_FORBIDDEN`, `KS_RESUME_REFUSED`, `KS_STORE_UNAVAILABLE`
   */
  async checkOrOverride(
    flip: { readonly id: string; readonly release?: string | undefined },
    workers: readonly WorkerInfo[],
    principal: Principal,
    reason: string | undefined,
  ): Promise<void> {
    if (reason === undefined) return this.checkResume(flip.release, workers);
    if (principal.role !== Role.ADMIN) {
      throw new KillSwitchError(
        ErrorCode.FORBIDDEN,
        `token '${principal.name}' may not override the release gate (needs the admin role)`,
      );
    }
    await this.#append(
      { release: flip.release ?? '-', status: 'override', reason, flip: flip.id },
      principal.name,
    );
  }

  async #append(
    fields: {
      release: string;
      status: ReleaseRecord['status'];
      reason?: string | undefined;
      flip?: string;
    },
    actor: string,
  ): Promise<ReleaseRecord> {
    await this.open();
    if (this.#failure !== undefined) throw this.#failure;
    const shared = this.#shared;
    if (shared !== undefined) {
      // KS-8.9.2 under the store's lock: catch up with the other replicas, chain onto the head.
      return this.#mutex.run(async () => {
        const { record } = await shared.append(this.#seq, (newer) => {
          this.#ingest(newer);
          return this.#next(fields, actor);
        });
        this.#apply(record);
        return record;
      });
    }
    return this.#mutex.run(async () => {
      const rec = this.#next(fields, actor);
      if (this.#fh !== undefined) {
        try {
          await this.#fh.write(`${JSON.stringify(rec)}\n`);
          if (this.#fsync) await this.#fh.datasync();
        } catch (err) {
          throw new KillSwitchError(
            ErrorCode.STORE_UNAVAILABLE,
            `cannot record release ${rec.release}: ${(err as Error).message}`,
            { cause: err },
          );
        }
      }
      this.#apply(rec);
      return rec;
    });
  }

  /** The next verdict, chained onto the last one applied (and signed with the key). */
  #next(
    fields: {
      release: string;
      status: ReleaseRecord['status'];
      reason?: string | undefined;
      flip?: string;
    },
    actor: string,
  ): ReleaseRecord {
    return chainRelease(
      stripUndefined({
        seq: this.#seq + 1,
        release: fields.release,
        status: fields.status,
        reason: fields.reason,
        flip: fields.flip,
        actor,
        at: new Date(this.#clock.wallNow()).toISOString(),
      }) as unknown as ReleaseRecord,
      releaseHead(this.#last),
      this.#key,
    );
  }

  /**
   * Carries the verdicts of an old `releases.jsonl` into the shared store (KS-8.9.5, `killswitch
   * db import-releases`): the file is read and checked as the gate's open checks it (a broken
   * chain or a signature that does not verify under the gate's keys refuses it whole); the
   * latest verdict of each release in it (overrides change no verdict and are left out) is
   * recorded again, chained onto the store's head, signed with the gate's key, all in one
   * transaction, with `actor` the verdict's own and the reason naming the file's seq. A release
   * that already has a verdict in the store is skipped: it was given after the upgrade, so it is
   * newer than the file's. Running it again imports nothing.
   *
   * @returns the verdicts recorded, and the releases skipped (with the store's verdict)
   * @throws {KillSwitchError} `KS_JOURNAL_CORRUPT` (the file or the store's chain);
   *   `KS_STORE_UNAVAILABLE`; `KS_INVALID_OPTION` when the gate is not on a shared store.
   *   Nothing is recorded when it throws.
   */
  async importFile(path: string): Promise<{
    readonly imported: readonly ReleaseRecord[];
    readonly skipped: readonly ReleaseRecord[];
    readonly read: number;
  }> {
    await this.open();
    const shared = this.#shared;
    if (shared === undefined) {
      throw new InvalidOptionError(
        'releaseGate',
        'a gate opened on a store that shares release verdicts (PostgreSQL)',
        this.path ?? 'memory',
      );
    }
    const { records } = await readReleaseFile(path, this.#ring);
    const latest = new Map<string, ReleaseRecord>();
    for (const r of records) if (r.status !== 'override') latest.set(r.release, r);
    const wanted = [...latest.values()].sort((a, b) => a.seq - b.seq);
    let skipped: ReleaseRecord[] = [];
    const done = await this.#mutex.run(async () => {
      const { records: written } = await shared.appendAll(this.#seq, (newer) => {
        this.#ingest(newer);
        skipped = wanted
          .map((r) => this.#latest.get(r.release))
          .filter((r): r is ReleaseRecord => r !== undefined);
        const out: ReleaseRecord[] = [];
        let last = this.#last;
        for (const r of wanted) {
          if (this.#latest.has(r.release)) continue;
          const at = new Date(this.#clock.wallNow()).toISOString();
          const rec = chainRelease(
            stripUndefined({
              seq: (last?.seq ?? 0) + 1,
              release: r.release,
              status: r.status,
              reason: `imported from ${path} seq ${r.seq} (${r.at})${r.reason === undefined ? '' : `: ${r.reason}`}`,
              actor: r.actor,
              at,
            }) as unknown as ReleaseRecord,
            releaseHead(last),
            this.#key,
          );
          out.push(rec);
          last = rec;
        }
        return out;
      });
      for (const rec of written) this.#apply(rec);
      return written;
    });
    return { imported: done, skipped, read: records.length };
  }

  /** The latest verdict of each release, oldest first. */
  async list(): Promise<ReleaseRecord[]> {
    await this.open();
    await this.#sync();
    return [...this.#latest.values()].sort((a, b) => a.seq - b.seq);
  }

  /** The latest verdict of one release. */
  async statusOf(release: string): Promise<ReleaseRecord | undefined> {
    await this.open();
    await this.#sync();
    return this.#latest.get(release);
  }

  /**
   * Refuses a resume that the gate does not allow. KS-10.5.3, KS-10.5.4
   *
   * @param release - the release the resume names
   * @param workers - the fleet as the tracker sees it
   * @throws {KillSwitchError} `KS_RESUME_REFUSED` (HTTP 409) naming the reason
   */
  async checkResume(release: string | undefined, workers: readonly WorkerInfo[]): Promise<void> {
    await this.open();
    // KS-8.9.3 what any replica recorded counts here, before the check.
    await this.#sync();
    if (release === undefined || release === '') {
      throw refused(
        'a resume must name the release it resumes on (--release <name>); mark it green first: killswitch release <name> --green --reason "<why>"',
      );
    }
    const verdict = this.#latest.get(release);
    if (verdict === undefined)
      throw refused(`release ${release} has not been marked green; ${markGreenHint(release)}`);
    if (verdict.status !== ReleaseStatus.GREEN) {
      throw refused(
        `release ${release} is ${verdict.status} (#${verdict.seq} by ${verdict.actor}${verdict.reason ? `: ${verdict.reason}` : ''}); once fixed, ${markGreenHint(release)}`,
      );
    }
    const red = connected(workers).filter(
      (w) => w.release !== undefined && this.#latest.get(w.release)?.status === ReleaseStatus.RED,
    );
    if (red.length > 0) {
      const names = red
        .slice(0, 10)
        .map((w) => `${w.id} (${w.release})`)
        .join(', ');
      throw refused(
        `${red.length} connected worker(s) still run a red release: ${names}${red.length > 10 ? ', …' : ''}`,
      );
    }
  }

  /** Closes the file and releases its lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#opening?.catch(() => undefined);
    await this.#mutex.run(async () => {
      await this.#fh?.close().catch(() => undefined);
      await this.#lock?.release().catch(() => undefined);
      this.#fh = undefined;
      this.#lock = undefined;
    });
  }
}

/** Workers that count as connected: an open stream, or a lease that has not run out. */
function connected(workers: readonly WorkerInfo[]): WorkerInfo[] {
  return workers.filter((w) => w.connected || !w.stale);
}

/**
 * The routes `POST /v1/releases` (admin) and `GET /v1/releases` (any role). KS-10.5.1
 *
 * @param gate - the release gate
 * @param workers - the fleet now (the control plane's tracker)
 */
export function releaseRoutes(gate: ReleaseGate, workers: () => readonly WorkerInfo[]): Route[] {
  return [
    {
      method: 'POST',
      path: ApiPath.RELEASES,
      auth: 'authenticated',
      handle: async ({ res, principal, body }) => {
        const raw = await body();
        const parsed = releaseRequestSchema.safeParse(raw);
        if (!parsed.success) throw new ValidationError('release', toIssues(parsed.error));
        const who = requireAdmin(principal);
        const record = await gate.record(parsed.data, who.name);
        sendJson(res, 201, { release: record });
      },
    },
    {
      method: 'GET',
      path: ApiPath.RELEASES,
      auth: 'authenticated',
      handle: async ({ res }) => {
        const answer: ReleasesAnswer = {
          releases: await gate.list(),
          workers: connected(workers()).map((w) => ({ id: w.id, release: w.release ?? null })),
        };
        sendJson(res, 200, answer);
      },
    },
  ];
}

/** KS-10.5.5 only an admin may mark a release: a verdict opens resumes of every selector. */
function requireAdmin(principal: Principal | undefined): Principal {
  if (principal === undefined || principal.role !== Role.ADMIN) {
    throw new KillSwitchError(
      ErrorCode.FORBIDDEN,
      `token '${principal?.name ?? 'anonymous'}' may not mark releases (needs the admin role)`,
    );
  }
  return principal;
}

function refused(message: string): KillSwitchError {
  return new KillSwitchError(ErrorCode.RESUME_REFUSED, `resume refused: ${message}`);
}

/**
 * How to mark a release green, for a refusal: the CLI command first (what an operator at 3am
 * types), then the one-step resume and the console. KS-10.5.3
 */
function markGreenHint(release: string): string {
  return `mark it green with: killswitch release ${release} --green --reason "<why>" (or resume with --release ${release} --mark-green, or the console's release panel)`;
}
