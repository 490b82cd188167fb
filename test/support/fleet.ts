/**
 * A fleet the way the README's "Scaling out" builds it, on loopback: a private PostgreSQL,
 * N identical `node-red` processes serving ThingsBoard provisioning over MQTT from that one
 * registry (each with its own embedded broker), and HAProxy in TCP mode in front of them.
 * Every process is real and every one can be killed with SIGKILL and started again on the
 * same port and user directory.
 */
import { once } from "node:events";
import { createConnection } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deploy, runtimes, startNodeRed, type RunningNodeRed } from "./node-red";
import { freeTcpPort } from "./ports";
import { startPostgres, type PgServer } from "./postgres";
import { balancedConfig, runHaproxy } from "./haproxy";
import { type Started } from "./process";

export const FLEET_KEY = "fleet-provision-key-2b7c";
export const FLEET_SECRET = "fleet-provision-secret-e41d09";
export const FLEET_PROFILE = "fleet";
export const FLEET_TABLE = "fleet_registry";

export interface FleetOptions {
  instances: number;
  /** provision-response's repeat window, in seconds (0: off). */
  repeatWindowS: number;
  /** Expect a PROXY v2 header on the instances' MQTT listeners, and have HAProxy send one. */
  proxyProtocol?: boolean;
}

/** The flows every instance runs: one store on PostgreSQL, one profile, one MQTT service. */
export function fleetFlows(pg: PgServer, opts: FleetOptions): unknown[] {
  return [
    { id: "fleet-tab", type: "tab", label: "fleet" },
    {
      id: "fleet-store",
      type: "credential-store-config",
      z: "fleet-tab",
      name: "fleet registry",
      backend: "postgres",
      pgUrl: "",
      pgHost: pg.host,
      pgPort: String(pg.port),
      pgDatabase: pg.database,
      pgUser: pg.user,
      pgTls: "",
      pgNamespace: FLEET_TABLE,
      pgPoolSize: "4",
      encrypt: false,
      credentials: { pgPassword: "${FLEET_PG_PASSWORD}" },
    },
    {
      id: "fleet-profile",
      type: "provisioning-profile",
      z: "fleet-tab",
      name: FLEET_PROFILE,
      strategy: "allow-create",
      credentialsType: "ACCESS_TOKEN",
      allowReprovision: false,
      credentials: { key: FLEET_KEY, secret: FLEET_SECRET },
    },
    {
      id: "fleet-server",
      type: "provision-response",
      z: "fleet-tab",
      name: "fleet service",
      dialect: "thingsboard",
      profile: "fleet-profile",
      mqtt: "embedded",
      mqttHost: "127.0.0.1",
      mqttPort: "${FLEET_MQTT_PORT}",
      mqttProxyProtocol: opts.proxyProtocol === true,
      http: false,
      coap: false,
      store: "fleet-store",
      decide: false,
      // Many devices share few source addresses here; the limits per address are not what
      // this fleet test is about.
      rateLimit: 10000,
      rateBurst: 10000,
      mqttPerRemote: 1000,
      repeatWindow: opts.repeatWindowS,
      closeAfter: 5,
      x: 300,
      y: 100,
      wires: [[], ["fleet-audit"]],
    },
    {
      // One log line per audit event: who asked, from where, and what happened (no secret).
      id: "fleet-audit",
      type: "function",
      z: "fleet-tab",
      name: "audit to the log",
      func: "const a = msg.payload || {};\nnode.log(`audit ${a.remote} ${a.deviceName} ${a.outcome}`);\nreturn null;",
      outputs: 0,
      x: 500,
      y: 100,
      wires: [],
    },
  ];
}

export interface FleetInstance {
  readonly index: number;
  readonly mqttPort: number;
  readonly userDir: string;
  nr?: RunningNodeRed;
  /** SIGKILL to the process group, resolved once it has exited. */
  kill(): Promise<void>;
  /** Starts the same user directory (flows and credentials as left) on the same MQTT port. */
  start(): Promise<void>;
  /** Everything this instance printed, across its restarts. */
  log(): string;
  /** Resolves once the running process prints a line matching `re` from now on. */
  logged(re: RegExp, ms?: number): Promise<void>;
}

export interface Fleet {
  pg: PgServer;
  instances: FleetInstance[];
  /** HAProxy's frontend port: where devices connect. */
  port: number;
  /** Resolves once HAProxy has printed that backend server `i` is UP (or DOWN) after `from` chars of its log. */
  serverState(i: number, state: "UP" | "DOWN", from: number): Promise<void>;
  haproxyLog(): string;
  /** Redeploys every instance with other options (the flows stay the same otherwise). */
  redeploy(opts: FleetOptions): Promise<void>;
  stop(): Promise<void>;
}

function waitFor(output: () => string, from: number, re: RegExp, child: Started["child"], ms: number) {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`not seen within ${ms} ms: ${re}`)), ms);
    const check = () => {
      if (re.test(output().slice(from))) finish();
    };
    const finish = (err?: Error) => {
      clearTimeout(timer);
      child.stdout?.off("data", check);
      child.stderr?.off("data", check);
      if (err) reject(err);
      else resolve();
    };
    child.stdout?.on("data", check);
    child.stderr?.on("data", check);
    check();
  });
}

/** Resolves once 127.0.0.1:`port` accepts a TCP connection (what HAProxy's check does). */
export async function accepting(port: number, ms = 30000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing accepts on port ${port} within ${ms} ms`);
    // A refused connect comes back at once: space the probes as HAProxy's checks are.
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startFleet(opts: FleetOptions): Promise<Fleet> {
  const pg = await startPostgres();
  const rt = runtimes()[0]!;
  const flows = fleetFlows(pg, opts);
  const instances: FleetInstance[] = [];
  const dir = mkdtempSync(join(tmpdir(), "fleet-"));
  try {
    for (let i = 0; i < opts.instances; i++) {
      const mqttPort = await freeTcpPort();
      const userDir = mkdtempSync(join(dir, `nr${i + 1}-`));
      let past = "";
      const inst: FleetInstance = {
        index: i,
        mqttPort,
        userDir,
        log: () => past + (inst.nr?.output() ?? ""),
        logged: (re, ms = 30000) => {
          const nr = inst.nr!;
          return waitFor(nr.output, nr.output().length, re, nr.child, ms);
        },
        kill: async () => {
          const nr = inst.nr;
          if (!nr || nr.child.exitCode !== null || nr.child.signalCode !== null) return;
          const exited = once(nr.child, "exit");
          process.kill(-nr.child.pid!, "SIGKILL");
          await exited;
        },
        start: async () => {
          past += inst.nr?.output() ?? "";
          inst.nr = await startNodeRed(rt, {
            userDir,
            env: { FLEET_MQTT_PORT: String(mqttPort), FLEET_PG_PASSWORD: pg.password },
          });
        },
      };
      instances.push(inst);
    }
    // The first start has no flows yet; the deploy brings them, credentials included.
    await Promise.all(instances.map((i) => i.start()));
    await Promise.all(instances.map((i) => deploy(i.nr!, flows)));
    // "Started flows" comes before the brokers listen: wait until each one accepts.
    await Promise.all(instances.map((i) => accepting(i.mqttPort)));

    const port = await freeTcpPort();
    const haproxy = await runHaproxy(
      balancedConfig({
        frontendPort: port,
        serverPorts: instances.map((inst) => inst.mqttPort),
        serverOptions: `${opts.proxyProtocol ? "send-proxy-v2 " : ""}check inter 200ms fall 1 rise 1`,
      }),
    );
    return {
      pg,
      instances,
      port,
      haproxyLog: haproxy.output,
      serverState: (i, state, from) =>
        waitFor(
          haproxy.output,
          from,
          new RegExp(`Server nodered/nr${i + 1} is ${state}`),
          haproxy.child,
          30000,
        ),
      redeploy: async (o) => {
        await Promise.all(instances.map((i) => deploy(i.nr!, fleetFlows(pg, o))));
      },
      stop: async () => {
        await haproxy.stop();
        await Promise.all(instances.map((i) => i.nr?.stop()));
        await pg.remove();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(instances.map((i) => i.nr?.stop()));
    await pg.remove();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
