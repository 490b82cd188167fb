/**
 * A private HAProxy for one test file: Debian's /usr/sbin/haproxy in TCP mode, its
 * configuration generated in a temp directory, every frontend on 127.0.0.1 at a free
 * port, each forwarding to one backend port on 127.0.0.1 with `send-proxy-v2` (or
 * `send-proxy`, version 1), in the foreground (-db) and killed by its PID in stop().
 * `apt-get install haproxy` (scripts/ensure-peers.sh) provides it; tests skip with
 * HAPROXY_MISSING when it is absent.
 *
 * Clients may connect from any 127/8 address (Linux routes all of 127.0.0.0/8 to the
 * loopback interface): HAProxy passes that source on in the PROXY header, while its own
 * connection to the backend comes from 127.0.0.1, so a test can tell the two apart.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeTcpPort } from "./ports";
import { startProcess, type Started } from "./process";

export const HAPROXY_BIN = "/usr/sbin/haproxy";
export const HAPROXY_MISSING =
  "HAProxy is missing: apt-get install haproxy (or run scripts/ensure-peers.sh); the tests through it are skipped";

export function haproxyPresent(): boolean {
  return existsSync(HAPROXY_BIN);
}

export interface HaproxyRoute {
  /** Where HAProxy forwards to, on 127.0.0.1. */
  backendPort: number;
  /** The PROXY protocol version written before the client's bytes (default 2). */
  proxy?: 1 | 2;
}

export interface Haproxy {
  /** The frontend port of each route, in the order given. */
  ports: number[];
  config: string;
  pid(): number | undefined;
  stop(): Promise<void>;
}

/** The configuration text (also used by the examples test to validate with `haproxy -c`). */
export function haproxyConfig(routes: Array<HaproxyRoute & { frontendPort: number }>): string {
  const lines = [
    "global",
    "  maxconn 256",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 60s",
    "  timeout server 60s",
  ];
  routes.forEach((r, i) => {
    lines.push(
      `frontend f${i}`,
      `  bind 127.0.0.1:${r.frontendPort}`,
      `  default_backend b${i}`,
      `backend b${i}`,
      `  server s${i} 127.0.0.1:${r.backendPort} ${r.proxy === 1 ? "send-proxy" : "send-proxy-v2"}`,
    );
  });
  return lines.join("\n") + "\n";
}

/** `haproxy -c -f file`: exit code and output. */
export function haproxyCheck(file: string): { code: number | null; output: string } {
  const r = spawnSync(HAPROXY_BIN, ["-c", "-f", file], { encoding: "utf8" });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

/** Resolves once a TCP connection to the port succeeds (each retry on the previous refusal). */
function accepting(port: number, attempts = 200): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = (left: number) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", (err) => {
        s.destroy();
        if (left <= 1) reject(err);
        else setImmediate(() => attempt(left - 1));
      });
    };
    attempt(attempts);
  });
}

/** A running haproxy (-db -V) on a configuration of its own in a temp directory. */
export interface RunningHaproxy {
  /** What it printed (-V: servers going UP and DOWN). */
  output(): string;
  child: Started["child"];
  pid(): number | undefined;
  stop(): Promise<void>;
}

/** Starts haproxy on `config`; resolves once it has loaded it and bound its frontends. */
export async function runHaproxy(config: string): Promise<RunningHaproxy> {
  const dir = mkdtempSync(join(tmpdir(), "haproxy-"));
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, config);
  let proc: Started;
  try {
    // -V prints the polling mechanism once the configuration is loaded and bound.
    proc = await startProcess(
      HAPROXY_BIN,
      ["-db", "-V", "-f", file],
      /Using \w+\(\) as the polling mechanism/,
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    output: proc.output,
    child: proc.child,
    pid: () => proc.child.pid,
    stop: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One TCP frontend on 127.0.0.1:`frontendPort` balanced round robin over servers on
 * 127.0.0.1 named nr1, nr2, ... in backend "nodered", each with `serverOptions` after its
 * address ("send-proxy-v2 check inter 200ms fall 1 rise 1").
 */
export function balancedConfig(o: {
  frontendPort: number;
  serverPorts: number[];
  serverOptions: string;
  maxconn?: number;
}): string {
  return [
    "global",
    `  maxconn ${o.maxconn ?? 4000}`,
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 60s",
    "  timeout server 60s",
    "frontend mqtt",
    `  bind 127.0.0.1:${o.frontendPort}`,
    "  default_backend nodered",
    "backend nodered",
    "  balance roundrobin",
    ...o.serverPorts.map((port, i) => `  server nr${i + 1} 127.0.0.1:${port} ${o.serverOptions}`),
    "",
  ].join("\n");
}

export async function startHaproxy(routes: HaproxyRoute[]): Promise<Haproxy> {
  const withPorts = [];
  for (const r of routes) withPorts.push({ ...r, frontendPort: await freeTcpPort() });
  const config = haproxyConfig(withPorts);
  const proc = await runHaproxy(config);
  try {
    for (const r of withPorts) await accepting(r.frontendPort);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { ports: withPorts.map((r) => r.frontendPort), config, pid: proc.pid, stop: proc.stop };
}
