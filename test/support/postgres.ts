/**
 * A private PostgreSQL server for one test file: initdb in a temp directory, listening on
 * 127.0.0.1 only at a free port, its unix socket in that directory, password (SCRAM)
 * authentication for every connection, stopped and removed in after().
 *
 * initdb and postgres refuse to run as root ("cannot be run as root", src/bin/initdb and
 * src/backend/main/main.c), and CI runs the tests as root: there the server runs as the
 * `postgres` system user that Debian's postgresql package creates (spawn's uid/gid, the
 * temp directory chowned to it). As any other user it runs as that user.
 *
 * Binaries: Debian's postgresql (`apt-get install postgresql`) puts them in
 * /usr/lib/postgresql/<major>/bin, not on PATH; scripts/ensure-peers.sh installs it.
 */
import { spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { Client } from "pg";
import { join } from "node:path";
import { freeTcpPort } from "./ports";
import { run, startProcess, type Started } from "./process";

/** The newest /usr/lib/postgresql/<major>/bin holding initdb and postgres, if any. */
export function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((d) => /^\d+$/.test(d) && existsSync(join(root, d, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return majors.length > 0 ? join(root, majors[0], "bin") : undefined;
}

export const POSTGRES_MISSING =
  "PostgreSQL's server binaries are missing: apt-get install postgresql (or run scripts/ensure-peers.sh)";

/** Who the server runs as: the `postgres` user when we are root, else ourselves. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (r.status !== 0 || g.status !== 0)
    throw new Error(
      "running as root, and there is no postgres user to run PostgreSQL as (apt-get install postgresql)",
    );
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

export interface PgServer {
  host: string;
  port: number;
  /** The superuser initdb made, and its password. */
  adminUser: string;
  adminPassword: string;
  /** A plain role (no superuser) owning `database`, as a store would be given. */
  user: string;
  password: string;
  database: string;
  /** postgres://user:password@127.0.0.1:port/database for the plain role. */
  url(): string;
  /** Runs SQL as the superuser (over TCP, password auth) in `database` (default postgres); resolves with the rows. */
  query(sql: string, params?: unknown[], database?: string): Promise<Record<string, unknown>[]>;
  /** The postmaster's pid while it runs. */
  pid(): number | undefined;
  /** Kills the postmaster and every process of it at once (a crash, not a shutdown). */
  kill(): Promise<void>;
  /** Freezes the postmaster and its backends (SIGSTOP): a server that answers nothing. */
  pause(): void;
  /** Lets a paused server run on (SIGCONT). */
  resume(): void;
  /** Starts it again on the same port and data (after kill or stop); resolves once it accepts connections. */
  start(): Promise<void>;
  /** A fast shutdown (SIGINT: sessions are ended), waiting for it to exit. */
  stop(): Promise<void>;
  /** stop() and the temp directory removed. */
  remove(): Promise<void>;
}

const READY = /database system is ready to accept connections/;

/**
 * The postmaster's children (backends, checkpointer, ...), from /proc. Each of them calls
 * setsid() at start (postmaster.c / miscinit.c InitPostmasterChild: "make this process a
 * group leader"), so a signal to the postmaster's process group does not reach them.
 */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // "pid (comm) state ppid ...": comm may hold spaces, so read after its last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Signals the postmaster, then every child of it. */
function signalServer(pid: number, signal: NodeJS.Signals): void {
  const children = childrenOf(pid);
  process.kill(pid, signal);
  for (const c of children) {
    try {
      process.kill(c, signal);
    } catch {
      // exited meanwhile
    }
  }
}

/** How a store reaches `pg` as its plain role: what PostgresBackendOptions takes besides a namespace. */
export function roleOf(pg: PgServer): {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
} {
  return { host: pg.host, port: pg.port, database: pg.database, user: pg.user, password: pg.password };
}

export interface PgServerOptions {
  /** PEM server certificate and key: the server then offers TLS (ssl=on) beside plain TCP. */
  tls?: { cert: string; key: string };
}

export async function startPostgres(options: PgServerOptions = {}): Promise<PgServer> {
  const bin = postgresBin();
  if (!bin) throw new Error(POSTGRES_MISSING);
  const owner = serverUser();
  const dir = mkdtempSync(join(tmpdir(), "pg-test-"));
  const data = join(dir, "data");
  const sock = join(dir, "sock");
  mkdirSync(sock);
  const adminUser = "nrtest_admin";
  const adminPassword = `admin-${process.pid}-${Date.now()}`;
  const pwfile = join(dir, "pwfile");
  writeFileSync(pwfile, adminPassword + "\n", { mode: 0o600 });
  const tlsFiles: string[] = [];
  if (options.tls) {
    // The server refuses a key file others can read ("has group or world access").
    writeFileSync(join(dir, "server.crt"), options.tls.cert, { mode: 0o600 });
    writeFileSync(join(dir, "server.key"), options.tls.key, { mode: 0o600 });
    tlsFiles.push(join(dir, "server.crt"), join(dir, "server.key"));
  }
  if (owner) for (const p of [dir, sock, pwfile, ...tlsFiles]) chownSync(p, owner.uid, owner.gid);
  const tlsArgs = options.tls
    ? ["-c", "ssl=on", "-c", `ssl_cert_file=${tlsFiles[0]}`, "-c", `ssl_key_file=${tlsFiles[1]}`]
    : [];
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const init = await run(
    join(bin, "initdb"),
    [
      "-D",
      data,
      "-U",
      adminUser,
      `--pwfile=${pwfile}`,
      "--auth-local=scram-sha-256",
      "--auth-host=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ],
    { ...asOwner, env: { ...process.env, LC_ALL: "C" } },
  );
  rmSync(pwfile, { force: true });
  if (init.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.code}): ${init.stderr}`);
  }
  const port = await freeTcpPort();
  let proc: Started | undefined;
  const server: PgServer = {
    host: "127.0.0.1",
    port,
    adminUser,
    adminPassword,
    user: "store_user",
    password: `store-pw-${process.pid}-${Date.now()}`,
    database: "provisioning",
    url() {
      return `postgres://${this.user}:${encodeURIComponent(this.password)}@${this.host}:${this.port}/${this.database}`;
    },
    async query(sql, params = [], database = "postgres") {
      const client = new Client({
        host: "127.0.0.1",
        port,
        user: adminUser,
        password: adminPassword,
        database,
        connectionTimeoutMillis: 10000,
      });
      await client.connect();
      try {
        return (await client.query(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
    pid: () =>
      proc && proc.child.exitCode === null && proc.child.signalCode === null ? proc.child.pid : undefined,
    async kill() {
      const child = proc?.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      // The postmaster and every backend at once, as a machine crash would.
      signalServer(child.pid as number, "SIGKILL");
      await exited;
    },
    pause() {
      const pid = server.pid();
      if (pid !== undefined) signalServer(pid, "SIGSTOP");
    },
    resume() {
      const pid = server.pid();
      if (pid !== undefined) signalServer(pid, "SIGCONT");
    },
    async start() {
      if (server.pid() !== undefined) return;
      proc = await startProcess(
        join(bin, "postgres"),
        [
          "-D",
          data,
          "-k",
          sock,
          "-p",
          String(port),
          "-c",
          "listen_addresses=127.0.0.1",
          "-c",
          "fsync=off",
          "-c",
          "max_connections=40",
          "-c",
          "shared_buffers=16MB",
          ...tlsArgs,
        ],
        READY,
        { ...asOwner, env: { ...process.env, LC_ALL: "C" }, timeoutMs: 60000 },
      );
    },
    async stop() {
      const child: ChildProcess | undefined = proc?.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      process.kill(child.pid as number, "SIGINT");
      const killer = setTimeout(() => {
        try {
          process.kill(-(child.pid as number), "SIGKILL");
        } catch {
          // gone already
        }
      }, 15000);
      await exited;
      clearTimeout(killer);
    },
    async remove() {
      server.resume();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
    const pw = server.password.replace(/'/g, "''");
    await server.query(`CREATE ROLE ${server.user} LOGIN PASSWORD '${pw}'`);
    await server.query(`CREATE DATABASE ${server.database} OWNER ${server.user}`);
  } catch (err) {
    await server.remove();
    throw err;
  }
  return server;
}
