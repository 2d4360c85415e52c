/**
 * PostgreSQL clusters a test creates and owns: `initdb` in a temp dir on a free port with trust
 * authentication, a streaming standby made by `pg_basebackup -R`, a kill of the primary by its
 * pid, a promotion, and a TCP proxy the test can point at another cluster (as a floating address
 * or a DNS switch does in a real failover). Every cluster started here is stopped by
 * {@link stopAllClusters}, which a test calls in `afterAll` (and on failure: it never throws).
 *
 * The binaries come from `/usr/lib/postgresql/15/bin` (override with KS_PG_BIN). PostgreSQL
 * refuses to run as root, so as root the commands run as the `postgres` user.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** Where `initdb`, `pg_ctl` and `pg_basebackup` are. */
export const PG_BIN = process.env['KS_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

/** Whether the binaries are here (the tests fail, never skip, under CI=true when they are not). */
export const PG_BIN_FOUND = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres'].every((b) =>
  existsSync(join(PG_BIN, b)),
);

const AS_ROOT = process.getuid?.() === 0;

function run(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  const file = AS_ROOT ? 'runuser' : join(PG_BIN, cmd);
  const argv = AS_ROOT ? ['-u', 'postgres', '--', join(PG_BIN, cmd), ...args] : [...args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: timeoutMs, cwd: tmpdir() }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

let postgresIds: { uid: number; gid: number } | undefined;
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  if (postgresIds) return postgresIds;
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (line === undefined) throw new Error('running as root, but there is no postgres user');
  const [, , uid, gid] = line.split(':');
  postgresIds = { uid: Number(uid), gid: Number(gid) };
  return postgresIds;
}

/** Directories made for clusters, removed by {@link stopAllClusters} even when initdb failed. */
const dirs = new Set<string>();

/** A directory the cluster's owner may write. */
async function clusterDir(tag: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ks-pgc-${tag}-`));
  dirs.add(dir);
  if (AS_ROOT) {
    const { uid, gid } = await postgresUser();
    await chown(dir, uid, gid);
  }
  return dir;
}

/** A free loopback port (the OS picks it; a race with another process is possible but rare). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const addr = s.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const started = new Set<PgCluster>();

/** One cluster: its data directory, port and postmaster. */
export class PgCluster {
  #stopped = false;
  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly port: number,
  ) {}

  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** Creates a primary with `initdb` (trust auth, WAL for streaming) and starts it. */
  static async primary(name: string): Promise<PgCluster> {
    const dir = await clusterDir(name);
    const data = join(dir, 'data');
    await run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    const c = new PgCluster(name, dir, await freePort());
    await appendFile(
      join(data, 'postgresql.conf'),
      [
        '',
        `port = ${c.port}`,
        "listen_addresses = '127.0.0.1'",
        "unix_socket_directories = ''",
        'wal_level = replica',
        'max_wal_senders = 4',
        'wal_keep_size = 64MB',
        'max_connections = 60',
        'shared_buffers = 16MB',
        // Speed over durability of the test's files: a killed postmaster still leaves its
        // writes in the OS page cache, and the machine does not lose power mid-test.
        'fsync = off',
        'hot_standby = on',
        'wal_retrieve_retry_interval = 200ms',
        '',
      ].join('\n'),
    );
    await appendFile(
      join(data, 'pg_hba.conf'),
      'host replication all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n',
    );
    await c.start();
    return c;
  }

  /**
   * A streaming standby of `from` (`pg_basebackup -R`), replicating through `via` when given (a
   * {@link PgProxy} the test can cut to hold WAL back), started and streaming.
   */
  static async standby(name: string, from: PgCluster, via?: PgProxy): Promise<PgCluster> {
    const dir = await clusterDir(name);
    const data = join(dir, 'data');
    const port = via?.port ?? from.port;
    await run('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      '-D',
      data,
      '-R',
      '-X',
      'stream',
      '--no-sync',
    ]);
    const c = new PgCluster(name, dir, await freePort());
    await appendFile(join(data, 'postgresql.conf'), `\nport = ${c.port}\n`);
    await c.start();
    await from.waitForStreaming();
    return c;
  }

  get data(): string {
    return join(this.dir, 'data');
  }

  async start(): Promise<void> {
    started.add(this);
    await run('pg_ctl', ['-D', this.data, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start']);
  }

  /** The postmaster's pid (first line of postmaster.pid). */
  async pid(): Promise<number> {
    const text = await readFile(join(this.data, 'postmaster.pid'), 'utf8');
    return Number(text.split('\n')[0]);
  }

  /** One statement on a short-lived connection. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    database = 'postgres',
  ): Promise<R[]> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: this.port,
      user: 'postgres',
      database,
      connectionTimeoutMillis: 5000,
    });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Waits until a standby streams from this primary. */
  async waitForStreaming(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const rows = await this.query<{ n: string }>(
        "SELECT count(*)::text AS n FROM pg_stat_replication WHERE state = 'streaming'",
      );
      if (rows[0]?.n !== '0') return;
      if (Date.now() > end)
        throw new Error(`${this.name}: no standby streaming after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Makes every commit wait until the standby applied it (`synchronous_commit = remote_apply`):
   * the configuration under which a failover loses nothing acknowledged.
   */
  async makeReplicationSynchronous(): Promise<void> {
    await this.query("ALTER SYSTEM SET synchronous_standby_names = '*'");
    await this.query("ALTER SYSTEM SET synchronous_commit = 'remote_apply'");
    await this.query('SELECT pg_reload_conf()');
  }

  /**
   * Kills the postmaster and each of its processes with SIGKILL, by pid, as a machine that
   * dies would: no shutdown checkpoint, no goodbye to the standby.
   */
  async kill(): Promise<void> {
    const pid = await this.pid();
    const children = await childrenOf(pid);
    for (const p of [pid, ...children]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    const end = Date.now() + 10_000;
    while ([pid, ...children].some(alive) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.#stopped = true;
  }

  /** Promotes a standby (`pg_ctl promote -w`): it accepts writes when this resolves. */
  async promote(): Promise<void> {
    await run('pg_ctl', ['-D', this.data, '-w', '-t', '60', 'promote']);
  }

  /** Stops the cluster (immediate mode) and removes its files; never throws. */
  async stop(): Promise<void> {
    started.delete(this);
    if (!this.#stopped) {
      this.#stopped = true;
      await run('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', '-t', '30', 'stop']).catch(
        async () => {
          // pg_ctl could not stop it: kill what it left by pid.
          const pid = await this.pid().catch(() => 0);
          if (pid > 0) {
            for (const p of [pid, ...(await childrenOf(pid))]) {
              try {
                process.kill(p, 'SIGKILL');
              } catch {
                /* gone */
              }
            }
          }
        },
      );
    }
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids whose parent is `pid` (from /proc). */
async function childrenOf(pid: number): Promise<number[]> {
  const { readdir } = await import('node:fs/promises');
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(entry));
  }
  return out;
}

/** Stops every cluster this process started and has not stopped (for `afterAll`). */
export async function stopAllClusters(): Promise<void> {
  await Promise.all([...started].map((c) => c.stop()));
  for (const d of dirs) await rm(d, { recursive: true, force: true }).catch(() => undefined);
  dirs.clear();
}

/** A TCP proxy on a loopback port the test points at a cluster, cuts, and points elsewhere. */
export class PgProxy {
  readonly #sockets = new Set<Socket>();
  #target: number | undefined;
  #server: Server | undefined;

  private constructor(readonly port: number) {}

  /** Starts a proxy to `targetPort` on a free port. */
  static async start(targetPort: number): Promise<PgProxy> {
    const p = new PgProxy(await freePort());
    p.#target = targetPort;
    await p.#listen();
    return p;
  }

  /** `postgres://postgres@127.0.0.1:<proxy port>/<database>` */
  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** Drops every proxied connection and refuses new ones until {@link PgProxy.pointAt}. */
  async cut(): Promise<void> {
    this.#target = undefined;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Accepts connections again, to `targetPort`. */
  async pointAt(targetPort: number): Promise<void> {
    this.#target = targetPort;
    if (!this.#server) await this.#listen();
  }

  async close(): Promise<void> {
    await this.cut();
  }

  #listen(): Promise<void> {
    const server = createServer((down) => {
      const target = this.#target;
      if (target === undefined) {
        down.destroy();
        return;
      }
      const up = connect(target, '127.0.0.1');
      this.#sockets.add(down).add(up);
      const drop = () => {
        down.destroy();
        up.destroy();
        this.#sockets.delete(down);
        this.#sockets.delete(up);
      };
      down.on('error', drop).on('close', drop);
      up.on('error', drop).on('close', drop);
      down.pipe(up).pipe(down);
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  }
}
