import { readdirSync, readFileSync } from "node:fs";
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
      if (/port$/i.test(k) && (typeof v === "number" || (typeof v === "string" && /^\d+$/.test(v)))) {
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
