/**
 * credential-store: get, set, delete or list entries of the store its config node owns.
 * Output 1 carries results, output 2 the messages whose key was not found. Values go
 * only into msg.payload, never into status, logs or error texts.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import type { StoreConfigNode } from "./shared/store-ref";
import { localizedStoreError } from "./shared/errors";
import { StoreError, type StoreBackend } from "../lib/stores/backend";
import { asStoreError, runOperation, type Outcome } from "../lib/stores/operations";

interface CredentialStoreDef extends NodeDef {
  store?: string;
  operation?: string;
  key?: string;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;
type Status = { fill: "red" | "green" | "yellow" | "blue" | "grey"; shape: "dot" | "ring"; text: string };

const S = "credential-store.status.";
const CODES = new Set([
  "NOT_FOUND",
  "INVALID_KEY",
  "INVALID_VALUE",
  "WRONG_KEY",
  "CORRUPT",
  "IO",
  "READ_ONLY",
  "UNSUPPORTED",
]);

/** Keys are not secret, but a status line has little room. */
function shortKey(key: string): string {
  return key.length > 32 ? key.slice(0, 31) + "\u2026" : key;
}

export = function (RED: NodeAPI) {
  function CredentialStoreNode(this: Node, config: CredentialStoreDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;

    function backend(): StoreBackend {
      const cfg = config.store
        ? (RED.nodes.getNode(config.store) as unknown as StoreConfigNode | null)
        : null;
      if (!cfg) throw new StoreError("UNSUPPORTED", RED._("credential-store.errors.no-store"));
      if (!cfg.backend) {
        const code = CODES.has(cfg.failureCode ?? "") ? (cfg.failureCode as StoreError["code"]) : "IO";
        const reason =
          typeof cfg.failure === "string" ? cfg.failure : RED._("credential-store.errors.unavailable");
        throw new StoreError(code, reason);
      }
      return cfg.backend;
    }

    function report(out: Outcome, msg: Msg): { status: Status; port: 0 | 1 } {
      switch (out.operation) {
        case "get":
          msg.key = out.key;
          if (!out.entry) {
            msg.found = false;
            msg.expired = false;
            return {
              status: {
                fill: "yellow",
                shape: "ring",
                text: RED._(S + "not-found", { key: shortKey(out.key) }),
              },
              port: 1,
            };
          }
          msg.payload = out.entry.value;
          msg.found = true;
          msg.expired = out.entry.expired;
          msg.meta = out.entry.meta;
          return out.entry.expired
            ? {
                status: {
                  fill: "yellow",
                  shape: "dot",
                  text: RED._(S + "expired", { key: shortKey(out.key) }),
                },
                port: 0,
              }
            : {
                status: { fill: "green", shape: "dot", text: RED._(S + "found", { key: shortKey(out.key) }) },
                port: 0,
              };
        case "set":
          // The value leaves msg.payload here: what goes on is the summary, not the secret.
          msg.key = out.key;
          msg.payload = out.summary;
          msg.meta = out.summary.meta;
          return {
            status: { fill: "green", shape: "dot", text: RED._(S + "stored", { key: shortKey(out.key) }) },
            port: 0,
          };
        case "delete":
          msg.key = out.key;
          msg.payload = out.deleted;
          return {
            status: out.deleted
              ? { fill: "green", shape: "dot", text: RED._(S + "deleted", { key: shortKey(out.key) }) }
              : {
                  fill: "grey",
                  shape: "ring",
                  text: RED._(S + "nothing-deleted", { key: shortKey(out.key) }),
                },
            port: 0,
          };
        case "list":
          msg.payload = out.entries;
          return {
            status: { fill: "green", shape: "dot", text: RED._(S + "listed", { count: out.entries.length }) },
            port: 0,
          };
      }
    }

    if (!config.store) node.status({ fill: "red", shape: "ring", text: RED._(S + "no-store") });

    node.on("input", (msg, send, done) => {
      const m = msg as Msg;
      const operation =
        m.operation !== undefined && m.operation !== "" ? m.operation : config.operation || "get";
      const key = m.key !== undefined && m.key !== "" ? m.key : config.key;
      void (async () => {
        try {
          const out = await runOperation(backend(), { operation, key, payload: m.payload, meta: m.meta });
          const { status, port } = report(out, m);
          node.status(status);
          send(port === 0 ? [m, null] : [null, m]);
          done();
        } catch (err) {
          const e = asStoreError(err);
          node.status({
            fill: "red",
            shape: "ring",
            text: RED._(S + "failed", { reason: RED._("credential-store.reason." + e.code) }),
          });
          done(localizedStoreError(RED, "credential-store", e));
        }
      })();
    });
  }

  RED.nodes.registerType("credential-store", CredentialStoreNode);
};
