import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { freeTcpPort } from "./ports";
import { startProcess, type Started } from "./process";

/** The project's root, found from wherever the compiled tests were placed. */
export const PROJECT_ROOT = (() => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (existsSync(file) && JSON.parse(readFileSync(file, "utf8")).name === "node-red-contrib-provisioning")
      return dir;
  }
  throw new Error("cannot find the project root above " + __dirname);
})();

export interface Runtime {
  /** Label for messages: "Node-RED 4 on Node 20". */
  label: string;
  node: string;
  redJs: string;
}

/** Node-RED 4.1 from devDependencies on this Node; Node-RED 5 on Node 22 from .cache/nr5. */
export function runtimes(): Runtime[] {
  return [
    {
      label: `Node-RED 4 on Node ${process.versions.node}`,
      node: process.execPath,
      redJs: join(PROJECT_ROOT, "node_modules", "node-red", "red.js"),
    },
    {
      label: "Node-RED 5 on Node 22",
      node: join(PROJECT_ROOT, ".cache", "nr5", "node_modules", "node", "bin", "node"),
      redJs: join(PROJECT_ROOT, ".cache", "nr5", "node_modules", "node-red", "red.js"),
    },
  ];
}

export interface RunningNodeRed extends Started {
  url: string;
  port: number;
  userDir: string;
  /** Log lines that say something went wrong while loading or deploying. */
  problems: () => string[];
}

/** Lines that mean a load or deploy went wrong, whatever the Node-RED generation. */
const PROBLEM =
  /\[error\]|Missing node types|Waiting for missing types|Failed to load|Error loading|TypeError|ReferenceError|Unhandled/i;

/**
 * Starts the real `node-red` program with this package installed the way `npm install
 * <dir>` installs a local package (a link in the user directory's node_modules), on an
 * ephemeral loopback port, and resolves once the flows have started.
 */
export async function startNodeRed(
  rt: Runtime,
  opts: {
    flows?: unknown[];
    env?: NodeJS.ProcessEnv;
    /** More settings.js properties, as source text ("contextStorage: {...}"). */
    settings?: string;
    /** What the log says once it is ready, when not English (settings `lang`). */
    ready?: RegExp;
    userDir?: string;
  } = {},
): Promise<RunningNodeRed> {
  // A user directory given again is started as it was left: flows, credentials, context.
  const userDir = opts.userDir ?? mkdtempSync(join(tmpdir(), "nr-user-"));
  if (!existsSync(join(userDir, "node_modules"))) {
    mkdirSync(join(userDir, "node_modules"));
    symlinkSync(PROJECT_ROOT, join(userDir, "node_modules", "node-red-contrib-provisioning"), "dir");
    writeFileSync(join(userDir, "package.json"), JSON.stringify({ name: "nr-user", private: true }));
  }
  if (opts.flows || !existsSync(join(userDir, "flows.json"))) {
    writeFileSync(join(userDir, "flows.json"), JSON.stringify(opts.flows ?? []));
  }
  const port = await freeTcpPort();
  writeFileSync(
    join(userDir, "settings.js"),
    `module.exports = { uiHost: "127.0.0.1", uiPort: ${port}, flowFile: "flows.json",
        credentialSecret: "smoke-test-secret", logging: { console: { level: "info" } },
        editorTheme: { tours: false }, telemetry: { enabled: false }, ${opts.settings ?? ""} };`,
  );
  const started = await startProcess(
    rt.node,
    [rt.redJs, "-u", userDir, "-s", join(userDir, "settings.js")],
    opts.ready ?? /(?=[\s\S]*Server now running)(?=[\s\S]*(?:Started flows|Flows started))/,
    {
      // As under `npm start`: relative file names in flows resolve inside the user directory.
      cwd: userDir,
      env: { ...process.env, ...opts.env, NODE_RED_ENABLE_PROJECTS: "false" },
      timeoutMs: 60000,
    },
  );
  return {
    ...started,
    url: `http://127.0.0.1:${port}`,
    port,
    userDir,
    problems: () =>
      started
        .output()
        .split("\n")
        .filter((l) => PROBLEM.test(l)),
  };
}

/** Deploys a full flow configuration through the admin API and waits for the runtime to say so. */
export async function deploy(nr: RunningNodeRed, flows: unknown[]): Promise<void> {
  const before = nr.output().length;
  const res = await fetch(`${nr.url}/flows`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "Node-RED-Deployment-Type": "full",
      "Node-RED-API-Version": "v2",
    },
    body: JSON.stringify({ flows }),
  });
  if (res.status !== 200) throw new Error(`deploy answered ${res.status}: ${await res.text()}`);
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("flows did not start after deploy")), 30000);
    const check = () => {
      if (/Started flows|Flows started/.test(nr.output().slice(before))) {
        clearTimeout(timer);
        nr.child.stdout?.off("data", check);
        resolvePromise();
      }
    };
    nr.child.stdout?.on("data", check);
    check();
  });
}
