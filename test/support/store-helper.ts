/**
 * node-red-node-test-helper with types, for the credential-store tests, plus a probe
 * node that hands out the runtime's real global context.
 */
import type { EventEmitter } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ContextApi } from "../../lib/stores/context";

export interface StoreTestNode extends EventEmitter {
  id: string;
  receive(msg?: Record<string, unknown>): void;
  context(): { global: unknown };
}

export interface StoreHelper {
  init(runtimePath: string, settings?: Record<string, unknown>): void;
  startServer(done: (err?: Error) => void): void;
  stopServer(done: (err?: Error) => void): void;
  load(nodes: unknown, flow: unknown[], credentials?: Record<string, unknown>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): StoreTestNode;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const storeHelper = require("node-red-node-test-helper") as StoreHelper;
// Two memory context stores, so the context backend can be pointed at a named one; a user
// directory of the run's own, so a store with no directory never writes into ~/.node-red.
export const STORE_USER_DIR = mkdtempSync(join(tmpdir(), "store-user-"));
const SETTINGS = {
  userDir: STORE_USER_DIR,
  contextStorage: { default: { module: "memory" }, second: { module: "memory" } },
};
storeHelper.init(require.resolve("node-red"), SETTINGS);

/**
 * node-red-node-test-helper is one object for every test file in mocha's single process,
 * and every file's imports run before any test: init again with these settings when a
 * file starts its server, or the last helper module loaded decides them.
 */
export const startStoreServer = () => {
  storeHelper.init(require.resolve("node-red"), SETTINGS);
  return new Promise<void>((r, j) => storeHelper.startServer((e) => (e ? j(e) : r())));
};
export const stopStoreServer = () =>
  new Promise<void>((r, j) => storeHelper.stopServer((e) => (e ? j(e) : r())));

interface Red {
  nodes: {
    createNode(node: unknown, config: unknown): void;
    registerType(type: string, ctor: unknown): void;
  };
}

/** A node type that does nothing; its context().global is the runtime's global context. */
export function probeModule(RED: Red): void {
  RED.nodes.registerType("store-probe", function (this: unknown, config: unknown) {
    RED.nodes.createNode(this, config);
  });
}

export async function realGlobalContext(): Promise<ContextApi> {
  await storeHelper.load(probeModule, [{ id: "probe", type: "store-probe" }]);
  return storeHelper.getNode("probe").context().global as ContextApi;
}

/** The core catch node (sees done(err) with msg.error.code). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const storeCatchModule: unknown = require("@node-red/nodes/core/common/25-catch.js");
