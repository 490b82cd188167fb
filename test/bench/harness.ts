/**
 * What every benchmark shares: sizes (quick by default, the with --full, any of
 * them from the environment), servers in processes of their own (a bare baseline, or the
 * real node-red program) that report CPU and memory over IPC (stats-hook.ts), storm
 * clients in processes of their own (storm-client.ts), and one printed row per figure with
 * its ratio to the baseline measured in the same run.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT, runtimes } from "../support/node-red";
import { freeTcpPort } from "../support/ports";
import { percentile } from "./report";
import type { StatsAnswer } from "./stats-hook";
import type { StormJob, StormResult } from "./storm-client";

/** `npm run bench -- --full` (scripts/bench.js sets BENCH_FULL=1): the sizes. */
export const FULL = process.env.BENCH_FULL === "1";

/** A number list from BENCH_<NAME> ("1000,20000"), else the quick or the full default. */
export function sizes(name: string, quick: number[], full: number[]): number[] {
  const v = process.env[`BENCH_${name}`];
  if (v) return v.split(",").map((s) => Number(s.trim()));
  return FULL ? full : quick;
}

export function size(name: string, quick: number, full: number): number {
  return sizes(name, [quick], [full])[0];
}

/** Storm client processes: BENCH_CLIENTS, else one per core (at least 2). */
export const CLIENTS = size("CLIENTS", Math.max(2, cpus().length), Math.max(2, cpus().length));

// ---------------------------------------------------------------- servers

export interface MeasuredServer {
  label: string;
  child: ChildProcess;
  output: () => string;
  stats: (gc?: boolean) => Promise<StatsAnswer>;
  profile: (what: "start" | "stop", file?: string) => Promise<void>;
  stop: () => Promise<void>;
}

/** Children this process started: none outlives the bench, even when it fails. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

function measured(
  label: string,
  child: ChildProcess,
  output: () => string,
  onStop?: () => void,
): MeasuredServer {
  children.add(child);
  child.once("exit", () => children.delete(child));
  let seq = 0;
  const ask = <T>(msg: object, match: (m: Record<string, unknown>) => boolean): Promise<T> =>
    new Promise((resolve, reject) => {
      const onMessage = (m: Record<string, unknown>) => {
        if (!match(m)) return;
        child.off("message", onMessage);
        child.off("exit", onExit);
        resolve(m as T);
      };
      const onExit = () => reject(new Error(`${label} exited:\n${output().slice(-4000)}`));
      child.on("message", onMessage);
      child.once("exit", onExit);
      child.send(msg);
    });
  return {
    label,
    child,
    output,
    stats: (gc = false) => {
      const id = ++seq;
      return ask<StatsAnswer>({ stats: id, gc }, (m) => m.stats === id);
    },
    profile: async (what, file) => {
      await ask({ profile: what, file }, (m) => m.profile === (what === "start" ? "started" : "stopped"));
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10000);
        await exited;
        clearTimeout(killer);
      }
      onStop?.();
    },
  };
}

function collect(child: ChildProcess): () => string {
  // The last 64 KiB only: a long run's log must not be what grows.
  let out = "";
  const add = (c: Buffer) => {
    out += c.toString();
    if (out.length > 131072) out = out.slice(-65536);
  };
  child.stdout?.on("data", add);
  child.stderr?.on("data", add);
  return () => out;
}

/** A bare baseline (bare-server.ts) in its own process; resolves with its port. */
export async function startBare(
  kind: "mqtt" | "mqtts" | "http" | "coap" | "tls",
  env: NodeJS.ProcessEnv = {},
): Promise<MeasuredServer & { port: number }> {
  const child = fork(join(__dirname, "bare-server.js"), [kind], {
    execArgv: ["--expose-gc"],
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  const output = collect(child);
  const [m] = (await Promise.race([
    once(child, "message"),
    once(child, "exit").then(() => {
      throw new Error(`bare ${kind} exited:\n${output()}`);
    }),
  ])) as [{ port: number }];
  return { ...measured(`bare ${kind}`, child, output), port: m.port };
}

export interface BenchNodeRed extends MeasuredServer {
  url: string;
  port: number;
  userDir: string;
  /** ms from fork to "Started flows" */
  startMs: number;
}

/**
 * The real node-red program (Node-RED 4 from devDependencies) with this package linked
 * into a fresh user directory as `npm install <dir>` links it, the given flows and
 * (plain, credentialSecret: false) credentials, Node-RED's default "info" log, started
 * with --expose-gc. Its settings.js loads stats-hook.js: what the bench asks travels over
 * the IPC channel of fork, and nothing is added to the runtime's HTTP side.
 */
export async function startNodeRed(
  opts: {
    flows: unknown[];
    credentials?: Record<string, unknown>;
    withPackage?: boolean;
    env?: NodeJS.ProcessEnv;
    userDir?: string;
    label?: string;
  } = { flows: [] },
): Promise<BenchNodeRed> {
  const rt = runtimes()[0];
  const userDir = opts.userDir ?? mkdtempSync(join(tmpdir(), "bench-nr-"));
  mkdirSync(join(userDir, "node_modules"), { recursive: true });
  writeFileSync(join(userDir, "package.json"), JSON.stringify({ name: "bench-user", private: true }));
  if (opts.withPackage !== false) {
    try {
      symlinkSync(PROJECT_ROOT, join(userDir, "node_modules", "node-red-contrib-provisioning"), "dir");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  writeFileSync(join(userDir, "flows.json"), JSON.stringify(opts.flows));
  writeFileSync(join(userDir, "flows_cred.json"), JSON.stringify(opts.credentials ?? {}));
  const port = await freeTcpPort();
  const settings = join(userDir, "settings.js");
  writeFileSync(
    settings,
    `// Written by the bench (test/bench/harness.ts): the stats hook answers over IPC only.
require(${JSON.stringify(join(__dirname, "stats-hook.js"))}).installStatsHook();
module.exports = { uiHost: "127.0.0.1", uiPort: ${port}, flowFile: "flows.json", credentialSecret: false,
  editorTheme: { tours: false }, telemetry: { enabled: false } };
`,
  );
  const t0 = performance.now();
  const child = fork(rt.redJs, ["-u", userDir, "-s", settings], {
    cwd: userDir,
    execArgv: ["--expose-gc"],
    env: { ...process.env, NODE_RED_ENABLE_PROJECTS: "false", ...opts.env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  const output = collect(child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node-red did not start in 90 s:\n${output()}`)), 90000);
    const check = () => {
      if (/Started flows|Flows started/.test(output())) {
        clearTimeout(timer);
        child.stdout?.off("data", check);
        resolve();
      }
    };
    child.stdout?.on("data", check);
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`node-red exited (${code ?? sig}) before start:\n${output()}`));
    });
  });
  const startMs = performance.now() - t0;
  const server = measured(opts.label ?? "Node-RED", child, output, () =>
    opts.userDir ? undefined : rmSync(userDir, { recursive: true, force: true }),
  );
  return { ...server, url: `http://127.0.0.1:${port}`, port, userDir, startMs };
}

/** Lines of a Node-RED log that say something went wrong at load or deploy. */
export function problems(output: string): string[] {
  return output.split("\n").filter((l) => /\[error\]|\[warn\]|Missing node types|TypeError/.test(l));
}

// ---------------------------------------------------------------- the ThingsBoard flow

export const TB_KEY = "bench-provision-key";
export const TB_SECRET = "bench-provision-secret";

/** The registry's backend: the demo's journal; BENCH_STORE=file measures the file store instead. */
export function benchStoreBackend(): "journal" | "file" {
  return process.env.BENCH_STORE === "file" ? "file" : "journal";
}

/**
 * The demo's provision-response (examples/thingsboard-local-round-trip.json): profile
 * "allow to create new devices" issuing access tokens, its registry (a
 * credential-store-config of the journal backend in a folder of its own), rate limit off.
 * The embedded broker takes twice the concurrency in sessions (a session closing still
 * holds its slot for a moment); clients spread over loopback addresses under its
 * per-address limit.
 */
export function tbFlow(o: {
  mqttPort?: number;
  tls?: { cert: string; key: string };
  http?: boolean;
  coapPort?: number;
  maxSessions?: number;
  /** Another registry than benchStoreBackend()'s: credential-store-config fields, and its credentials. */
  store?: { config: Record<string, unknown>; credentials?: Record<string, unknown> };
}): { flows: unknown[]; credentials: Record<string, unknown> } {
  const flows: Record<string, unknown>[] = [
    { id: "bench-tab", type: "tab", label: "bench" },
    {
      id: "bench-profile",
      type: "provisioning-profile",
      name: "bench profile",
      strategy: "allow-create",
      credentialsType: "ACCESS_TOKEN",
      allowReprovision: false,
    },
    {
      id: "bench-store",
      type: "credential-store-config",
      name: "bench registry",
      backend: benchStoreBackend(),
      directory: "",
      defaultFolder: "own",
      encrypt: false,
      ...(o.store?.config ?? {}),
    },
    {
      id: "bench-server",
      type: "provision-response",
      z: "bench-tab",
      name: "provisioning server",
      profile: "bench-profile",
      mqtt: o.mqttPort ? "embedded" : "off",
      mqttHost: "127.0.0.1",
      mqttPort: o.mqttPort ?? 0,
      mqttTls: o.tls ? "bench-tls" : "",
      mqttMaxSessions: o.maxSessions ?? 1000,
      // The storm clients all come from 127.0.0.1: one address stands for every device, so
      // the per-address cap (100 by default, against one host taking every slot) is raised
      // with the session cap, as a user serving a gateway's children from one address would.
      mqttPerRemote: o.maxSessions ?? 1000,
      http: o.http ?? false,
      httpPath: "/api/v1/provision",
      coap: o.coapPort !== undefined,
      coapHost: "127.0.0.1",
      coapPort: o.coapPort ?? 5683,
      store: "bench-store",
      decide: false,
      closeAfter: 60,
      rateLimit: 0,
      rateBurst: 100,
      x: 200,
      y: 100,
      wires: [[], []],
    },
  ];
  if (o.tls)
    flows.push({
      id: "bench-tls",
      type: "tls-config",
      name: "bench server certificate",
      cert: o.tls.cert,
      key: o.tls.key,
      ca: "",
      certname: "",
      keyname: "",
      caname: "",
      verifyservercert: false,
    });
  const credentials: Record<string, unknown> = { "bench-profile": { key: TB_KEY, secret: TB_SECRET } };
  if (o.store?.credentials) credentials["bench-store"] = o.store.credentials;
  return { flows, credentials };
}

// ---------------------------------------------------------------- storm clients

export class StormClients {
  private constructor(private readonly procs: ChildProcess[]) {}

  static async start(n = CLIENTS): Promise<StormClients> {
    const procs = await Promise.all(
      Array.from({ length: n }, async () => {
        const child = fork(join(__dirname, "storm-client.js"), [], {
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        });
        children.add(child);
        child.once("exit", () => children.delete(child));
        await once(child, "message");
        return child;
      }),
    );
    return new StormClients(procs);
  }

  /** `count` devices, `concurrency` at a time, split over the clients; wall time in seconds. */
  async run(
    job: Omit<StormJob, "from" | "count" | "concurrency" | "client">,
    from: number,
    count: number,
    concurrency: number,
  ): Promise<StormResult & { seconds: number }> {
    const n = Math.min(this.procs.length, count);
    const t0 = performance.now();
    const results = await Promise.all(
      this.procs.slice(0, n).map((child, i) => {
        const share = Math.floor(count / n) + (i < count % n ? 1 : 0);
        const start = from + i * Math.floor(count / n) + Math.min(i, count % n);
        const c = Math.max(1, Math.floor(concurrency / n) + (i < concurrency % n ? 1 : 0));
        return new Promise<StormResult>((resolve, reject) => {
          const onExit = () => reject(new Error("a storm client exited"));
          const onMessage = (m: { result?: StormResult }) => {
            if (!m.result) return;
            child.off("message", onMessage);
            child.off("exit", onExit);
            resolve(m.result);
          };
          child.on("message", onMessage);
          child.once("exit", onExit);
          child.send({ job: { ...job, from: start, count: share, concurrency: c, client: i } });
        });
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const latencies: number[] = [];
    for (const r of results) for (const l of r.latencies) latencies.push(l);
    return {
      seconds,
      latencies,
      errors: results.reduce((a, r) => a + r.errors, 0),
      errorSamples: [...new Set(results.flatMap((r) => r.errorSamples))].slice(0, 5),
    };
  }

  async close(): Promise<void> {
    await Promise.all(
      this.procs.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = once(c, "exit");
        c.send({ exit: true });
        await exited;
      }),
    );
  }
}

// ---------------------------------------------------------------- measuring and printing

export interface Row {
  label: string;
  count: number;
  seconds: number;
  latencies: number[];
  errors: number;
  errorSamples: string[];
  /** server CPU per operation, ms */
  cpuMsPer: number;
  /** server CPU time over wall time, 1 = one core busy the whole time */
  busy: number;
  /** heap used after a forced GC at each checkpoint, bytes */
  heaps: number[];
  rss: number;
}

/**
 * `count` operations against `server`, with a forced GC and a heap reading every
 * `gcEvery` (the time spent collecting is not counted as load time nor load CPU).
 */
export async function measure(
  label: string,
  server: MeasuredServer | undefined,
  clients: StormClients,
  job: Omit<StormJob, "from" | "count" | "concurrency" | "client">,
  o: { count: number; concurrency: number; gcEvery?: number; from?: number },
): Promise<Row> {
  const row: Row = {
    label,
    count: 0,
    seconds: 0,
    latencies: [],
    errors: 0,
    errorSamples: [],
    cpuMsPer: NaN,
    busy: NaN,
    heaps: [],
    rss: NaN,
  };
  let cpuUs = 0;
  const every = o.gcEvery ?? o.count;
  for (let done = 0; done < o.count;) {
    const n = Math.min(every, o.count - done);
    const before = server ? await server.stats(false) : undefined;
    const r = await clients.run(job, (o.from ?? 0) + done, n, o.concurrency);
    const after = server ? await server.stats(true) : undefined;
    if (before && after) {
      cpuUs += after.cpuUs - before.cpuUs;
      row.heaps.push(after.heapUsed);
      row.rss = after.rss;
    }
    done += n;
    row.count += n;
    row.seconds += r.seconds;
    for (const l of r.latencies) row.latencies.push(l);
    row.errors += r.errors;
    for (const s of r.errorSamples) if (row.errorSamples.length < 5) row.errorSamples.push(s);
  }
  if (server) {
    row.cpuMsPer = cpuUs / 1000 / row.count;
    row.busy = cpuUs / 1e6 / row.seconds;
  }
  return row;
}

const mib = (b: number) => (b / 1048576).toFixed(1);

export function rateOf(r: Row): number {
  return (r.count - r.errors) / r.seconds;
}

/** One line: rate, p50, p99, errors, server CPU per operation and its busy share, heap; ratios to `base`. */
export function printRow(r: Row, base?: Row): void {
  const s = [...r.latencies].sort((a, b) => a - b);
  const parts = [
    `${r.label.padEnd(46)} ${rateOf(r).toFixed(0).padStart(6)}/s`,
    `p50 ${percentile(s, 50).toFixed(1)} ms`,
    `p99 ${percentile(s, 99).toFixed(1)} ms`,
    `errors ${r.errors}`,
  ];
  if (!Number.isNaN(r.cpuMsPer))
    parts.push(`cpu ${r.cpuMsPer.toFixed(3)} ms/op (server busy ${(100 * r.busy).toFixed(0)}%)`);
  if (r.heaps.length) parts.push(`heap after GC ${r.heaps.map(mib).join(" > ")} MiB`);
  if (base)
    parts.push(
      `| x${(rateOf(r) / rateOf(base)).toFixed(2)} rate` +
        (Number.isNaN(r.cpuMsPer) || Number.isNaN(base.cpuMsPer)
          ? ""
          : `, x${(r.cpuMsPer / base.cpuMsPer).toFixed(2)} cpu`),
    );
  process.stdout.write(parts.join("  ") + "\n");
  if (r.errorSamples.length) process.stdout.write(`    errors seen: ${r.errorSamples.join("; ")}\n`);
}

/** A CPU profile (node:inspector) reduced to its top self-time functions. */
export function topSelfTime(file: string, top = 15): string[] {
  const p = JSON.parse(readFileSync(file, "utf8")) as {
    nodes: Array<{
      id: number;
      callFrame: { functionName: string; url: string; lineNumber: number };
      children?: number[];
    }>;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  // A native function (no url: writeBuffer, fsync) is named with the JS function that called it.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const place = (f: { functionName: string; url: string; lineNumber: number }) =>
    `${f.functionName || "(anonymous)"} ${f.url
      .replace(/^file:\/\//, "")
      .replace(/.*node_modules\//, "")
      .replace(PROJECT_ROOT + "/", "")}:${f.lineNumber + 1}`;
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const n = byId.get(id);
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    if (!n) return;
    const f = n.callFrame;
    let key = f.url ? place(f) : f.functionName || "(anonymous)";
    if (!f.url && !key.startsWith("(")) {
      let up = byId.get(parent.get(n.id) ?? -1);
      while (up && !up.callFrame.url) up = byId.get(parent.get(up.id) ?? -1);
      if (up) key += ` (native, from ${place(up.callFrame)})`;
    }
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(
      ([k, us]) =>
        `${(us / 1000).toFixed(0).padStart(7)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`,
    );
}

export function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
