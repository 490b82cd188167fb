import { readdirSync, readFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { freeTcpPort } from "../support/ports";
import { PROJECT_ROOT } from "../support/node-red";

export interface Example {
  file: string;
  nodes: Array<Record<string, unknown>>;
}

export function loadExamples(): Example[] {
  const dir = join(PROJECT_ROOT, "examples");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => ({ file, nodes: JSON.parse(readFileSync(join(dir, file), "utf8")) as Example["nodes"] }));
}

const LOCAL_URL_PORT = /((?:127\.0\.0\.1|localhost)):(\d{2,5})/g;

/**
 * Examples listen on the well-known ports a newcomer expects (1883, 5683, 15684, and
 * Node-RED's 1880). In a test they must not collide with each other or with services on
 * the machine, so every local port is mapped, consistently across the example, to a free
 * ephemeral one; 1880 becomes the port of the runtime under test.
 */
export async function withEphemeralPorts(ex: Example, nodeRedPort: number): Promise<Example["nodes"]> {
  const map = new Map<number, number>([[1880, nodeRedPort]]);
  const mapped = async (p: number) => {
    if (!map.has(p)) map.set(p, await freeTcpPort());
    return map.get(p) as number;
  };
  const out: Example["nodes"] = [];
  for (const node of ex.nodes) {
    const copy: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === "env" && Array.isArray(v)) {
        // A tab's environment keeps each port in one place (PROVISION_MQTT_PORT, DPS_PORT).
        const env: unknown[] = [];
        for (const e of v as Array<{ name: string; value: unknown }>)
          env.push(
            /PORT$/.test(e.name) && /^\d+$/.test(String(e.value))
              ? { ...e, value: String(await mapped(Number(e.value))) }
              : e,
          );
        copy[k] = env;
      } else if (/port$/i.test(k) && (typeof v === "number" || (typeof v === "string" && /^\d+$/.test(v)))) {
        const n = await mapped(Number(v));
        copy[k] = typeof v === "number" ? n : String(n);
      } else if (typeof v === "string") {
        // matchAll starts where the regex's lastIndex is, so no test() before it (a test()
        // that matched left lastIndex past the address, and nothing was ever mapped).
        let s = v;
        for (const m of v.matchAll(LOCAL_URL_PORT))
          s = s.replace(m[0], `${m[1]}:${await mapped(Number(m[2]))}`);
        copy[k] = s;
      } else copy[k] = v;
    }
    out.push(copy);
  }
  return out;
}

/** Wraps tab-less example nodes into a tab, as Import does. */
export function asFlow(nodes: Example["nodes"], tabId: string): Example["nodes"] {
  if (nodes.some((n) => n.type === "tab")) return nodes;
  return [
    { id: tabId, type: "tab", label: tabId },
    ...nodes.map((n) => (n.z === undefined && !isConfig(n) ? { ...n, z: tabId } : n)),
  ];
}

function isConfig(n: Record<string, unknown>): boolean {
  return n.x === undefined && n.y === undefined && n.type !== "comment";
}

interface DemoModule {
  prepare: (userDir: string) => unknown;
  DEFAULTS: Record<string, string>;
  DEMO_CREDENTIALS: Record<string, Record<string, string>>;
}

/**
 * What `npm start` gives the examples: the environment with the demo defaults, and the
 * credentials of their nodes (`${NAME}` references), which an exported flow never holds.
 */
export function demoSetup(): { env: Record<string, string>; credentials: DemoModule["DEMO_CREDENTIALS"] } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const demo = require(join(PROJECT_ROOT, "scripts", "demo.js")) as DemoModule;
  return { env: { ...demo.DEFAULTS }, credentials: demo.DEMO_CREDENTIALS };
}

/** Attaches the demo credentials to the nodes they belong to, as a deploy from the editor does. */
export function withCredentials(nodes: Example["nodes"]): Example["nodes"] {
  const { credentials } = demoSetup();
  return nodes.map((n) =>
    typeof n.id === "string" && credentials[n.id] ? { ...n, credentials: credentials[n.id] } : n,
  );
}

/** The files `npm start` makes for the examples (the plgd demo PKI) in a user directory. */
export function prepareDemoFiles(userDir: string): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require(join(PROJECT_ROOT, "scripts", "demo.js")) as DemoModule).prepare(userDir);
}

/** The ports the examples would use if nothing named them otherwise. */
export const WELL_KNOWN_PORTS = [1880, 1883, 15684] as const;

/** A TCP listener that takes every connection and drops it at once: a port taken by something else. */
export async function startSquatter(): Promise<{
  port: number;
  connections: () => number;
  stop: () => Promise<void>;
}> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * An example as a user on a busy machine imports it: the tab environment's port variables
 * (its one place per port, e.g. PROVISION_MQTT_PORT) set to `envPorts`, nothing else
 * edited, except that any other field still naming a well-known port is pointed at a
 * squatter of that port (`taken`), as it would be when 1880/1883/15684 belong to someone
 * else. A field with a fixed port then reaches the squatter and the example fails.
 */
export function withTakenPorts(
  ex: Example,
  envPorts: Record<string, number>,
  taken: ReadonlyMap<number, number>,
): Example["nodes"] {
  const unused = new Set(Object.keys(envPorts));
  const squat = (s: string) =>
    s.replace(
      /(^|\D)(1880|1883|15684)(?!\d)/g,
      (_m, pre: string, p: string) => `${pre}${taken.get(Number(p))}`,
    );
  const nodes = ex.nodes.map((node) => {
    const copy: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === "env" && Array.isArray(v))
        copy[k] = (v as Array<{ name: string; value: string }>).map((e) => {
          if (!(e.name in envPorts)) return e;
          unused.delete(e.name);
          return { ...e, value: String(envPorts[e.name]) };
        });
      else if (k === "info" || k === "x" || k === "y") copy[k] = v;
      else if (typeof v === "number" && taken.has(v)) copy[k] = taken.get(v);
      else if (typeof v === "string") copy[k] = squat(v);
      else if (v && typeof v === "object") copy[k] = JSON.parse(squat(JSON.stringify(v))) as unknown;
      else copy[k] = v;
    }
    return copy;
  });
  if (unused.size > 0) throw new Error(`${ex.file}: no tab environment entry ${[...unused].join(", ")}`);
  return nodes;
}
