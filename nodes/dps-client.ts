/**
 * dps-client: the device side of plgd DPS. Provisions on deploy (or on a message) with
 * the manufacturer certificate from a tls-config node, outputs the ProvisioningResult on
 * output 1 and every status change on output 2, keeps the result in a credential store.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import { DpsClient, type DpsStatusEvent } from "../lib/dialects/plgd-dps/client";
import { coapTcpConnector } from "../lib/dialects/plgd-dps/transport";
import { parseIntervals } from "../lib/retry/policy";
import { storeKeyFor } from "../lib/client/reuse";
import { DEFAULT_RETRY_TEXT, envOf, text, tlsClientOptionsOf, warnBadSettings } from "./shared/config";
import { localizedError } from "./shared/errors";
import { storeFromConfig } from "./shared/store-ref";
import { hasEnvRef, resolveEnvRefs } from "../lib/client/env-ref";
import { demoPkiOf } from "./shared/demo-pki";

interface ClientDef extends NodeDef {
  endpoints?: string;
  tls?: string;
  skipVerify?: boolean;
  deviceId?: string;
  deviceName?: string;
  retryIntervals?: string;
  store?: string;
  storeKey?: string;
  autoStart?: boolean;
  /** The demo PKI's device certificate and DPS CA instead of a tls-config (nodes/shared/demo-pki.ts). */
  demoPki?: boolean;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;
const S = "dps-client.";

export = function (RED: NodeAPI) {
  function DpsClientNode(this: Node, config: ClientDef) {
    RED.nodes.createNode(this, config);
    warnBadSettings(RED, this, "dps-client", config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    let client: DpsClient | undefined;
    let started = false;
    let closed = false;
    const demo = config.demoPki === true;
    // The status says it while the demo PKI is in use: its keys are no secret.
    const marked = (s: string) => (demo ? `${s} · ${RED._(S + "status.demo-pki")}` : s);

    const showStatus = (e: DpsStatusEvent) => {
      if (e.retryInMs !== undefined) {
        node.status({
          fill: "yellow",
          shape: "ring",
          text: marked(RED._(S + "status.retrying", { seconds: String(Math.ceil(e.retryInMs / 1000)) })),
        });
      } else if (e.status.includes("CLOUD_STARTED") && !e.status.includes("RENEW_CREDENTIALS")) {
        node.status({ fill: "green", shape: "dot", text: marked(RED._(S + "status.provisioned")) });
      } else {
        node.status({ fill: "blue", shape: "ring", text: marked(RED._(S + "status." + e.step)) });
      }
    };

    try {
      // `${NAME}` inside the list too (Node-RED replaces only a whole-value reference), so an
      // endpoint can name a port kept in one place, e.g. coaps+tcp://127.0.0.1:${DPS_PORT} (the plgd example).
      const env = envOf(RED, node);
      const rawEndpoints = config.endpoints ?? "";
      for (const m of rawEndpoints.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g))
        if (env(m[1]) === undefined) throw new Error(RED._(S + "errors.env-unset", { name: m[1] }));
      const endpoints = (hasEnvRef(rawEndpoints) ? resolveEnvRefs(rawEndpoints, env) : rawEndpoints)
        .split(/[\s,]+/)
        .filter((s) => s.length > 0);
      const pki = demo ? demoPkiOf(RED, (dir) => RED._(S + "warn.demo-pki", { dir })) : undefined;
      const tls = pki
        ? { cert: pki.deviceCert, key: pki.deviceKey, ca: pki.dpsCaCert, rejectUnauthorized: true }
        : tlsClientOptionsOf(RED, config.tls, RED._(S + "errors.tls-missing"));
      if (!tls) throw new Error(RED._(S + "errors.tls-missing"));
      if (!tls.cert || !tls.key) throw new Error(RED._(S + "errors.no-certificate"));
      // Verification stays on unless this node or the tls-config says otherwise, visibly.
      tls.rejectUnauthorized = config.skipVerify !== true && tls.rejectUnauthorized !== false;
      if (!tls.rejectUnauthorized) node.warn(RED._(S + "warn.no-verify"));
      const store = storeFromConfig(RED, "dps-client", config.store);
      const deviceId = text(config.deviceId);
      client = new DpsClient({
        endpoints,
        connect: coapTcpConnector(tls),
        deviceId,
        deviceName: text(config.deviceName),
        store,
        // What is stored today stays readable: plgd-dps/<device id>, or the node's id without one.
        storeKey: text(config.storeKey) ?? storeKeyFor("plgd-dps", deviceId ?? node.id),
        retryIntervals: parseIntervals(text(config.retryIntervals) ?? DEFAULT_RETRY_TEXT),
        onStatus: (e) => {
          showStatus(e);
          const payload: Record<string, unknown> = {
            status: e.status,
            mask: e.mask,
            legacyMask: e.legacyMask,
            step: e.step,
            endpoint: e.endpoint,
          };
          if (e.deviceId) payload.deviceId = e.deviceId;
          if (e.retryInMs !== undefined) payload.retryInMs = e.retryInMs;
          if (e.error) payload.error = e.error;
          node.send([null, { topic: "plgd-dps/status", payload }]);
        },
        onResult: (r) => node.send([{ topic: "plgd-dps/provisioned", payload: r }, null]),
        onWarning: (err) =>
          node.warn(RED._(S + "warn.save-failed", { code: (err as { code?: string }).code ?? "IO" })),
      });
    } catch (err) {
      node.status({ fill: "red", shape: "ring", text: RED._(S + "status.config") });
      node.error(RED._(S + "errors.config", { reason: (err as Error).message }));
    }

    const start = async () => {
      if (!client || started || closed) return;
      started = true;
      try {
        await client.start();
      } catch (err) {
        started = false;
        node.status({ fill: "red", shape: "ring", text: RED._(S + "status.store-failed") });
        node.error(RED._(S + "errors.store", { reason: (err as Error).message }));
      }
    };

    if (client && config.autoStart !== false) void start();

    node.on("input", (msg: Msg, send, done) => {
      void (async () => {
        try {
          if (!client) throw new Error(RED._(S + "errors.not-configured"));
          if (msg.reset === true || msg.topic === "factory-reset") {
            started = true;
            await client.factoryReset();
          } else if (!started) {
            await start();
          } else if (client.result && client.status.includes("CLOUD_STARTED")) {
            send([
              { ...msg, topic: "plgd-dps/provisioned", payload: { ...client.result, reused: true } },
              null,
            ]);
          }
          done();
        } catch (err) {
          done(localizedError(RED, "dps-client", err));
        }
      })();
    });

    node.on("close", (_removed: boolean, done: () => void) => {
      closed = true;
      if (!client) return done();
      client.stop().then(
        () => done(),
        () => done(),
      );
    });
  }
  RED.nodes.registerType("dps-client", DpsClientNode);
};
