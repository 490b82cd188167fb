/**
 * A typed face for node-red-node-test-helper (it ships no types), plus a stand-in
 * credential-store-config node that exposes a given backend, for the node tests.
 */
import type { EventEmitter } from "node:events";
import type { StoreBackend } from "../../lib/stores/backend";

export interface TestNode extends EventEmitter {
  id: string;
  receive(msg?: Record<string, unknown>): void;
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
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const helper = require("node-red-node-test-helper") as Helper;
helper.init(require.resolve("node-red"));

/**
 * One helper for every file in mocha's single process, whose imports all run before any
 * test: init again when a file starts its server (see test/support/node-helper.ts).
 */
export const startServer = () => {
  helper.init(require.resolve("node-red"));
  return new Promise<void>((r, j) => helper.startServer((e) => (e ? j(e) : r())));
};
export const stopServer = () => new Promise<void>((r, j) => helper.stopServer((e) => (e ? j(e) : r())));

interface Red {
  nodes: {
    createNode(node: unknown, config: unknown): void;
    registerType(type: string, ctor: unknown): void;
  };
}

/** credential-store-config as the provisioning nodes see it: a node with a `backend`. */
export function fakeStoreConfigModule(backend: () => StoreBackend | undefined) {
  return function (RED: Red) {
    RED.nodes.registerType(
      "credential-store-config",
      function (this: { backend?: StoreBackend }, config: unknown) {
        RED.nodes.createNode(this, config);
        this.backend = backend();
      },
    );
  };
}

/** The core tls-config node, loaded from the installed Node-RED. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const tlsConfigModule: unknown = require("@node-red/nodes/core/network/05-tls.js");

/** The core catch node (sees done(err) with msg.error.code). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const catchModule: unknown = require("@node-red/nodes/core/common/25-catch.js");
