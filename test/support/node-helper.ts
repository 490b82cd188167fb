/**
 * A typed face for node-red-node-test-helper for the serving nodes' tests: a stand-in
 * credential store config node exposing a given backend, and the runtime's httpNode app
 * served on a loopback port (the helper does not serve it by itself).
 */
import type { EventEmitter } from "node:events";
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { StoreBackend } from "../../lib/stores/backend";

/** A sinon spy on the Node prototype: shared by every node, so filter by thisValues. */
export interface SpiedMethod {
  args: unknown[][];
  thisValues: unknown[];
}

export interface TestNode extends EventEmitter {
  id: string;
  receive(msg?: Record<string, unknown>): void;
  status: SpiedMethod;
  warn: SpiedMethod;
  error: SpiedMethod;
  log: SpiedMethod;
}

export interface Helper {
  init(runtimePath: string, settings?: Record<string, unknown>): void;
  /** Runtime settings of the next load, merged with the defaults (so {} resets them). */
  settings(userSettings: Record<string, unknown>): Record<string, unknown>;
  startServer(done: (err?: Error) => void): void;
  stopServer(done: (err?: Error) => void): void;
  load(nodes: unknown, flow: unknown[], credentials?: Record<string, unknown>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): TestNode;
  log(): { args: unknown[][] };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const helper = require("node-red-node-test-helper") as Helper;
helper.init(require.resolve("node-red"));

/**
 * Every test file shares this one helper in mocha's single process, and every file's
 * imports run before any test: init again when a file starts its server, so the settings
 * are this face's defaults and not those of the last helper module loaded.
 */
export const startServer = () => {
  helper.init(require.resolve("node-red"));
  return new Promise<void>((r, j) => helper.startServer((e) => (e ? j(e) : r())));
};
export const stopServer = () => new Promise<void>((r, j) => helper.stopServer((e) => (e ? j(e) : r())));

interface Red {
  httpNode: unknown;
  nodes: {
    createNode(node: unknown, config: unknown): void;
    registerType(type: string, ctor: unknown): void;
  };
}

export const backends = new Map<string, StoreBackend>();
let httpNodeApp: RequestListener | undefined;

/** Node type "test-store": its `backend` is backends.get(config.name). */
export function testStoreModule(RED: Red): void {
  httpNodeApp = RED.httpNode as RequestListener;
  RED.nodes.registerType("test-store", function (this: { backend?: StoreBackend }, config: { name: string }) {
    RED.nodes.createNode(this, config);
    this.backend = backends.get(config.name);
  });
}

/**
 * Serves the httpNode app of the latest load on an ephemeral loopback port. Each load
 * makes a new app, so the server forwards to whichever is current: it can be made once,
 * before any flow needs its URL.
 */
export async function serveHttpNode(): Promise<{ url: string; port: number; server: Server }> {
  const server = createServer((req, res) => {
    if (httpNodeApp) return httpNodeApp(req, res);
    res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, server };
}

/** Resolves with the first status call whose fill is one of `fills`. */
export function statusOf(
  node: TestNode,
  fills: string[],
  ms = 15000,
): Promise<{ fill: string; text: string }> {
  return new Promise((resolve, reject) => {
    const seen = () =>
      node.status.args
        .filter((_a, i) => node.status.thisValues[i] === node)
        .map((a) => a[0] as { fill: string; text: string })
        .find((s) => s && fills.includes(s.fill));
    const now = seen();
    if (now) return resolve(now);
    const timer = setTimeout(() => reject(new Error(`no ${fills.join("/")} status within ${ms} ms`)), ms);
    const on = () => {
      const s = seen();
      if (s) {
        clearTimeout(timer);
        node.off("call:status", on);
        resolve(s);
      }
    };
    node.on("call:status", on);
  });
}

/** The next message a helper node receives. */
export function nextInput<T = Record<string, unknown>>(node: TestNode, ms = 15000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message on ${node.id} within ${ms} ms`)), ms);
    node.once("input", (msg: T) => {
      clearTimeout(timer);
      resolve(msg);
    });
  });
}
