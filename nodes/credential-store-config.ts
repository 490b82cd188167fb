/**
 * credential-store-config: owns ONE store backend (journal, file, token file, Node-RED
 * context or PostgreSQL) for every node that names it. Exposes `backend` and, when the backend is
 * unusable, `failure` (see nodes/shared/store-ref.ts); deploy never fails because of it.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import type { Node, NodeAPI, NodeDef } from "node-red";
import type { StoreBackend } from "../lib/stores/backend";
import type { ContextApi } from "../lib/stores/context";
import { createStore, type OpenableStore } from "../lib/stores/open";
import { asStoreError } from "../lib/stores/operations";
import { credentialValue } from "../lib/client/env-ref";
import { tlsClientOptionsOf } from "./shared/config";

interface StoreConfigDef extends NodeDef {
  backend?: string;
  directory?: string;
  /**
   * file with no directory: "own" = a folder of this node's own (the dialog's default for a
   * new node); missing = the folder that stores deployed before this property shared.
   */
  defaultFolder?: string;
  tokenPath?: string;
  contextStore?: string;
  contextPrefix?: string;
  encrypt?: boolean | string;
  pgUrl?: string;
  pgHost?: string;
  pgPort?: string | number;
  pgDatabase?: string;
  pgUser?: string;
  /** The id of a tls-config node. */
  pgTls?: string;
  pgNamespace?: string;
  pgPoolSize?: string | number;
}

interface StoreConfigCreds {
  encryptionKey?: string;
  pgPassword?: string;
}

/** A number field of the dialog: empty is undefined; anything else is left to the backend to refuse. */
function numberField(v: string | number | undefined): number | undefined {
  if (v === undefined || String(v).trim() === "") return undefined;
  return Number(v);
}

/** What other nodes read (store-ref.ts), plus the code of the failure for msg.error.code. */
interface StoreConfigState {
  backend?: StoreBackend;
  failure?: string;
  failureCode?: string;
}

/**
 * The global context as a ContextApi. The default store is named "_" explicitly:
 * keys() with no store name falls back to it but logs an "unknown store" warning.
 */
function globalContext(node: Node<StoreConfigCreds>): ContextApi {
  const g = node.context().global as unknown as ContextApi;
  return {
    get: (key, store, cb) => g.get(key, store ?? "_", cb),
    set: (key, value, store, cb) => g.set(key, value, store ?? "_", cb),
    keys: (store, cb) => g.keys(store ?? "_", cb),
  };
}

function settingsOf(RED: NodeAPI): Record<string, unknown> {
  return RED.settings as unknown as Record<string, unknown>;
}

export = function (RED: NodeAPI) {
  function CredentialStoreConfigNode(this: Node<StoreConfigCreds>, config: StoreConfigDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const state = node as unknown as StoreConfigState;

    const fail = (err: unknown) => {
      const e = asStoreError(err);
      node.error(RED._("credential-store-config.errors.unusable", { reason: e.message }));
      state.failure = e.message;
      state.failureCode = e.code;
    };

    let store: OpenableStore | undefined;
    try {
      const settings = settingsOf(RED);
      const userDir = typeof settings.userDir === "string" ? settings.userDir : join(homedir(), ".node-red");
      const storage = settings.contextStorage;
      const contextStores =
        typeof storage === "object" && storage !== null ? ["default", ...Object.keys(storage)] : undefined;
      const env = (name: string): string | undefined => {
        const v: unknown = RED.util.getSetting(node, name);
        return typeof v === "string" ? v : undefined;
      };
      const encrypt = config.encrypt === true || config.encrypt === "true";
      const postgres = config.backend === "postgres";
      store = createStore(
        {
          backend: config.backend,
          directory: config.directory,
          ownFolder: config.defaultFolder === "own" ? node.id : undefined,
          tokenPath: config.tokenPath,
          contextStore: config.contextStore,
          contextPrefix: config.contextPrefix,
          encrypt,
          encryptionKey: encrypt ? credentialValue(node.credentials?.encryptionKey, env) : undefined,
          ...(postgres
            ? {
                pgUrl: config.pgUrl,
                pgHost: config.pgHost,
                pgPort: numberField(config.pgPort),
                pgDatabase: config.pgDatabase,
                pgUser: config.pgUser,
                pgPassword: credentialValue(node.credentials?.pgPassword, env) || undefined,
                pgTls: tlsClientOptionsOf(
                  RED,
                  config.pgTls,
                  RED._("credential-store-config.errors.tls-missing"),
                ),
                pgNamespace: config.pgNamespace,
                pgPoolSize: numberField(config.pgPoolSize),
              }
            : {}),
        },
        {
          userDir,
          context: config.backend === "context" ? globalContext(node) : undefined,
          contextStores,
        },
      );
      state.backend = store;
      // Opening now shows a wrong key or an unwritable directory at deploy; the backend
      // stays in place and answers every call with the same coded error.
      store.open().catch(fail);
    } catch (err) {
      fail(err);
    }

    node.on("close", (_removed: boolean, done: () => void) => {
      const closing = store ? store.close() : Promise.resolve();
      closing.then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType<Node<StoreConfigCreds>, StoreConfigDef, unknown, StoreConfigCreds>(
    "credential-store-config",
    CredentialStoreConfigNode,
    { credentials: { encryptionKey: { type: "password" }, pgPassword: { type: "password" } } },
  );
};
