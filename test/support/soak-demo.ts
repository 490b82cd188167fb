/**
 * The demo flows of `npm start` (scripts/demo.js) in the real node-red program, made to be
 * watched for hours: Node-RED's most verbose log level, and a settings.js of the test's
 * own that starts a small stats listener on its own loopback port (never the admin API):
 * event-loop delay (perf_hooks.monitorEventLoopDelay), memory after a forced GC and the
 * process's active resources (process.getActiveResourcesInfo, Node >= 17.3). The product
 * is not changed: only the settings file a user would write differs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Comms } from "./node-red-comms";
import { isJournal, readJournal } from "./journal-reader";
import { PROJECT_ROOT, runtimes, type Runtime } from "./node-red";
import { freeTcpPort, freeUdpPort } from "./ports";

/** The demo's secrets (scripts/demo.js DEFAULTS), set explicitly so the scan knows them. */
export const DEMO_SECRETS = {
  PROVISION_DEVICE_KEY: "soak-provision-key-7d1e",
  PROVISION_DEVICE_SECRET: "soak-provision-secret-93ab5c",
  BOOTSTRAP_EXTERNAL_ID: "soak-device-01",
  BOOTSTRAP_EXTERNAL_KEY: "soak-external-key-4f0a2b",
  BOOTSTRAP_THING_KEY: "soak-thing-key-c81d77",
  BOOTSTRAP_ENCRYPT_KEY: "a1b2c3d4e5f60718293a4b5c6d7e8f90",
};
const CREDENTIAL_SECRET = "soak-credential-secret-5e6f";

/** node-red processes this test process started: none outlives it, even when a test fails. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

export interface Ports {
  http: number;
  mqtt: number;
  dps: number;
  coap: number;
  stats: number;
}

export interface Stats {
  rss: number;
  heapUsed: number;
  /** Longest event-loop delay since the last reset, in ms. */
  eldMaxMs: number;
  eldP99Ms: number;
  /**
   * Longest delay the process spent busy (CPU it used while late), in ms: the event-loop
   * delay without time the OS gave to other processes. What "blocks the event loop" means.
   */
  blockedMaxMs: number;
  /** process.getActiveResourcesInfo() counted by type (Timeout, TCPSocketWrap, ...). */
  resources: Record<string, number>;
}

export interface ProcStats {
  /** user + system CPU time, ms */
  cpuMs: number;
  rssBytes: number;
  fds: number;
}

export interface SoakDemo {
  rt: Runtime;
  userDir: string;
  ports: Ports;
  url: string;
  child: ChildProcess;
  pid: number;
  /** Everything node-red wrote to stdout and stderr since this start. */
  output: () => string;
  comms: Comms;
  /** Stats from inside the process; gc: force two full collections first. */
  stats: (opts?: { gc?: boolean; reset?: boolean }) => Promise<Stats>;
  proc: () => ProcStats;
  alive: () => boolean;
  stop: () => Promise<void>;
  kill9: () => Promise<void>;
  /** Stops node-red and deletes the user directory. */
  remove: () => Promise<void>;
}

/** settings.js source: demo settings, trace logging, and the stats listener. */
function settingsSource(port: number, statsPort: number): string {
  return `// Written by the soak suite (test/support/soak-demo.ts).
const v8 = require("node:v8");
v8.setFlagsFromString("--expose-gc");
const forceGc = require("node:vm").runInNewContext("gc");
const { monitorEventLoopDelay } = require("node:perf_hooks");
const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();
// On a shared machine a delay can be starvation (the process not scheduled) rather than
// the loop being busy. Every 20 ms: how late the tick is, and how much CPU the process
// used meanwhile; the smaller of the two is time the loop was busy with its own work.
let blockedMax = 0;
let lastWall = performance.now();
let lastCpu = process.cpuUsage();
setInterval(() => {
  const now = performance.now();
  const cpu = process.cpuUsage();
  const late = now - lastWall - 20;
  const used = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
  if (late > 0) blockedMax = Math.max(blockedMax, Math.min(late, used));
  lastWall = now;
  lastCpu = cpu;
}, 20).unref();
const stats = require("node:http").createServer((req, res) => {
  const q = new URL(req.url, "http://127.0.0.1").searchParams;
  const body = { eldMaxMs: eld.max / 1e6, eldP99Ms: eld.percentile(99) / 1e6, blockedMaxMs: blockedMax };
  if (q.get("gc")) { forceGc(); forceGc(); }
  // A forced GC is itself a pause: never count it against the next batch.
  if (q.get("reset") || q.get("gc")) {
    eld.reset();
    blockedMax = 0;
    lastWall = performance.now();
    lastCpu = process.cpuUsage();
  }
  const m = process.memoryUsage();
  const resources = {};
  for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] || 0) + 1;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ ...body, rss: m.rss, heapUsed: m.heapUsed, resources }));
});
stats.keepAliveTimeout = 0;
stats.listen(${statsPort}, "127.0.0.1");
stats.unref();
module.exports = {
  uiHost: "127.0.0.1",
  uiPort: ${port},
  flowFile: "flows.json",
  credentialSecret: ${JSON.stringify(CREDENTIAL_SECRET)},
  contextStorage: { default: { module: "memory" }, file: { module: "localfilesystem" } },
  editorTheme: { tours: false },
  telemetry: { enabled: false },
  logging: { console: { level: "trace", metrics: false, audit: true } },
};
`;
}

/** Demo flows from scripts/demo.js with this run's ports; CoAP on the ThingsBoard server too. */
function demoFlows(ports: Ports): unknown[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const demo = require(join(PROJECT_ROOT, "scripts", "demo.js")) as {
    flows: () => Array<Record<string, unknown>>;
    writeCredentials: (dir: string, secret: string) => void;
  };
  const saved = { PORT: process.env.PORT, M: process.env.PROVISION_MQTT_PORT, D: process.env.DPS_PORT };
  process.env.PORT = String(ports.http);
  process.env.PROVISION_MQTT_PORT = String(ports.mqtt);
  process.env.DPS_PORT = String(ports.dps);
  try {
    const flows = demo.flows();
    const server = flows.find((n) => n.id === "tb-server");
    if (server) Object.assign(server, { coap: true, coapHost: "127.0.0.1", coapPort: ports.coap });
    return flows;
  } finally {
    const put = (k: string, v: string | undefined) =>
      v === undefined ? delete process.env[k] : (process.env[k] = v);
    put("PORT", saved.PORT);
    put("PROVISION_MQTT_PORT", saved.M);
    put("DPS_PORT", saved.D);
  }
}

/** A fresh user directory holding the demo, as `npm start` lays it out. */
export async function prepareDemoDir(): Promise<{ userDir: string; ports: Ports }> {
  const userDir = mkdtempSync(join(tmpdir(), "soak-demo-"));
  const ports: Ports = {
    http: await freeTcpPort(),
    mqtt: await freeTcpPort(),
    dps: await freeTcpPort(),
    coap: await freeUdpPort(),
    stats: await freeTcpPort(),
  };
  mkdirSync(join(userDir, "node_modules"));
  symlinkSync(PROJECT_ROOT, join(userDir, "node_modules", "node-red-contrib-provisioning"), "dir");
  writeFileSync(join(userDir, "package.json"), JSON.stringify({ name: "soak-user", private: true }));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const demo = require(join(PROJECT_ROOT, "scripts", "demo.js")) as {
    prepare: (dir: string) => unknown;
    writeCredentials: (dir: string, secret: string) => void;
  };
  await demo.prepare(userDir);
  writeFileSync(join(userDir, "flows.json"), JSON.stringify(demoFlows(ports), null, 2));
  demo.writeCredentials(userDir, CREDENTIAL_SECRET);
  return { userDir, ports };
}

export function demoEnv(userDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...DEMO_SECRETS,
    DPS_MANUFACTURER_CA: join(userDir, "plgd-dps-demo-pki", "manufacturer-ca.pem"),
    NODE_RED_ENABLE_PROJECTS: "false",
  };
}

function getJson(port: number, path: string): Promise<Stats> {
  return fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(30000) }).then(
    (r) => r.json() as Promise<Stats>,
  );
}

/** /proc/<pid>/stat fields 14, 15 (utime, stime, in clock ticks of 100 Hz on Linux), 24 (rss pages). */
export function procStats(pid: number): ProcStats {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state)
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const rssPages = Number(fields[21]);
  return {
    cpuMs: (utime + stime) * 10,
    rssBytes: rssPages * 4096,
    fds: readdirSync(`/proc/${pid}/fd`).length,
  };
}

/**
 * Starts node-red on the demo directory (a new one unless given) and waits for "Started
 * flows" and the comms socket.
 */
export async function startSoakDemo(
  opts: { userDir?: string; ports?: Ports; rt?: Runtime; env?: NodeJS.ProcessEnv } = {},
): Promise<SoakDemo> {
  // SOAK_NODE_RED=5: Node-RED 5 on Node 22 from .cache/nr5 (scripts/ensure-nr5.sh) instead of 4.
  const rt = opts.rt ?? runtimes()[process.env.SOAK_NODE_RED === "5" ? 1 : 0];
  let userDir = opts.userDir;
  let ports = opts.ports;
  if (!userDir || !ports) ({ userDir, ports } = await prepareDemoDir());
  writeFileSync(join(userDir, "settings.js"), settingsSource(ports.http, ports.stats));
  const child = spawn(rt.node, [rt.redJs, "-u", userDir, "-s", join(userDir, "settings.js")], {
    cwd: userDir,
    env: { ...demoEnv(userDir), ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node-red did not start in 90 s:\n${out}`)), 90000);
    const check = () => {
      if (/Server now running/.test(out) && /Started flows|Flows started/.test(out)) {
        clearTimeout(timer);
        child.stdout?.off("data", check);
        resolve();
      }
    };
    child.stdout?.on("data", check);
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`node-red exited (${code ?? sig}) before start:\n${out}`));
    });
  });
  const url = `http://127.0.0.1:${ports.http}`;
  const comms = await Comms.connect(url);
  const alive = () => child.exitCode === null && child.signalCode === null;
  const p = ports;
  return {
    rt,
    userDir,
    ports,
    url,
    child,
    pid: child.pid as number,
    output: () => out,
    comms,
    stats: (o = {}) => getJson(p.stats, `/?${o.gc ? "gc=1&" : ""}${o.reset ? "reset=1" : ""}`),
    proc: () => procStats(child.pid as number),
    alive,
    stop: async () => {
      comms.close();
      if (!alive()) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10000);
      await exited;
      clearTimeout(killer);
    },
    kill9: async () => {
      comms.close();
      if (!alive()) return;
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    },
    remove: async () => {
      comms.close();
      if (alive()) {
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }
      rmSync(userDir as string, { recursive: true, force: true });
    },
  };
}

/** Every regular file under the user directory (node_modules left out) with its mtime. */
export function fileTimes(dir: string, into = new Map<string, number>()): Map<string, number> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules") continue;
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isDirectory()) fileTimes(path, into);
    else if (st.isFile()) into.set(path, st.mtimeMs);
  }
  return into;
}

/** Files written, created or removed between two snapshots. */
export function writesBetween(a: Map<string, number>, b: Map<string, number>): string[] {
  const changed: string[] = [];
  for (const [path, t] of b) if (a.get(path) !== t) changed.push(path);
  for (const path of a.keys()) if (!b.has(path)) changed.push(path);
  return changed;
}

/**
 * The serving registry and device stores: every entry file, parsed (or the parse error), of
 * the shared folder of stores deployed before and of every store's own folder
 * (`provisioning-stores/<id>`, named "<id>/<file>"); a journal store's live entries, read
 * from its segments (named "<id>/journal:<key>").
 */
export function readStore(userDir: string): Array<{ file: string; record?: unknown; error?: string }> {
  const dirs: Array<[string, string]> = [[join(userDir, "provisioning-credentials"), ""]];
  const own = join(userDir, "provisioning-stores");
  if (existsSync(own)) for (const id of readdirSync(own)) dirs.push([join(own, id), `${id}/`]);
  const out: Array<{ file: string; record?: unknown; error?: string }> = [];
  for (const [dir, prefix] of dirs) {
    if (!existsSync(dir)) continue;
    if (isJournal(dir)) {
      // A journal store: its live entries, in the shape of the file store's records.
      try {
        for (const [key, r] of readJournal(dir))
          out.push({ file: `${prefix}journal:${key}`, record: { key, meta: r.m, value: r.v, sealed: r.s } });
      } catch (err) {
        out.push({ file: `${prefix}journal`, error: (err as Error).message });
      }
      continue;
    }
    for (const name of readdirSync(dir)) {
      if (!name.endsWith(".json")) continue;
      try {
        out.push({ file: prefix + name, record: JSON.parse(readFileSync(join(dir, name), "utf8")) });
      } catch (err) {
        out.push({ file: prefix + name, error: (err as Error).message });
      }
    }
  }
  return out;
}
