/**
 * bootstrap-fetch: the device side of Mainflux bootstrap. Fetches the configuration
 * (plain, Mainflux secure mode, or the stronger GCM mode) with Mainflux's dialect through
 * the conductor (nodes/shared/device-requests.ts), which keeps it in a credential store
 * and reuses it across restarts; a message with msg.rebootstrap = true fetches again and
 * replaces what is stored only when the new configuration arrived whole.
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import type { ConnectionOptions } from "node:tls";
import { credentialValue, resolveEnvRefs } from "../lib/client/env-ref";
import { DEFAULT_TIMEOUT_MS, prepare, type BootstrapMode } from "../lib/dialects/mainflux/client";
import { mainfluxDialect, type MainfluxDeviceSettings } from "../lib/dialects/mainflux/device-dialect";
import { envOf, retryPolicyOf, seconds, tlsClientOptionsOf, warnBadSettings } from "./shared/config";
import { serveDevice } from "./shared/device-requests";
import { absoluteUrl } from "./shared/local-http";

interface FetchDef extends NodeDef {
  url?: string;
  tls?: string;
  externalId?: string;
  mode?: string;
  keyId?: string;
  waitUnknown?: boolean;
  timeout?: string | number;
  retryIntervals?: string;
  retryJitter?: string | number;
  retryMax?: string | number;
  store?: string;
  storeKey?: string;
  onDeploy?: boolean;
}

interface FetchCreds {
  externalKey?: string;
  encryptionKey?: string;
}

const S = "bootstrap-fetch.";

function isMode(v: unknown): v is BootstrapMode {
  return v === "plain" || v === "secure" || v === "gcm";
}

export = function (RED: NodeAPI) {
  function BootstrapFetchNode(this: Node<FetchCreds>, config: FetchDef) {
    RED.nodes.createNode(this, config);
    warnBadSettings(RED, this, "bootstrap-fetch", config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const env = envOf(RED, node);
    const mode: BootstrapMode = isMode(config.mode) ? config.mode : "plain";
    const creds = node.credentials ?? {};
    let configError: Error | undefined;
    let url = resolveEnvRefs((config.url ?? "").trim(), env);
    try {
      // A URL starting with "/" is this Node-RED's own HTTP (a bootstrap-service beside it).
      url = absoluteUrl(RED, url, RED._(S + "errors.no-http-node"));
    } catch (err) {
      configError = err as Error;
    }
    const settings: MainfluxDeviceSettings = {
      url,
      externalKey: credentialValue(creds.externalKey, env),
      mode,
      encryptionKey: mode === "plain" ? undefined : credentialValue(creds.encryptionKey, env),
      keyId: (config.keyId ?? "").trim(),
      waitWhileUnknown: config.waitUnknown === true,
    };
    const settingId = resolveEnvRefs((config.externalId ?? "").trim(), env);

    // Keys that cannot work are refused at deploy, not at the first request.
    let tls: ConnectionOptions | undefined;
    try {
      if (configError) throw configError;
      prepare({
        ...settings,
        externalId: settingId || "deploy-check",
        externalKey: settings.externalKey || "x",
      });
      tls = tlsClientOptionsOf(RED, config.tls, RED._(S + "errors.tls-missing"));
      if (tls?.rejectUnauthorized === false) node.warn(RED._(S + "warn.no-verify"));
    } catch (err) {
      configError = err as Error;
      node.status({ fill: "red", shape: "ring", text: RED._(S + "status.config") });
      node.error(RED._(S + "errors.config", { reason: (err as Error).message }));
    }
    if (!configError && /^http:/i.test(settings.url) && mode === "plain")
      node.warn(RED._(S + "warn.plain-http"));

    serveDevice(RED, node, {
      dialect: mainfluxDialect,
      settingsFor: () => settings,
      identitySetting: settingId,
      env,
      storeId: config.store,
      storeKeyTemplate: config.storeKey,
      // Only a whole, parsed configuration is saved: the stored one is replaced then.
      force: (msg) => msg.rebootstrap === true,
      policy: retryPolicyOf(config),
      timeoutMs: seconds(config.timeout, DEFAULT_TIMEOUT_MS / 1000),
      tls: () => tls,
      configError,
      // Like inject's "once"; not when the settings cannot work (the error was shown).
      onDeploy: config.onDeploy !== false && !configError,
      texts: {
        reused: () => RED._(S + "status.reused"),
        attempt: () => RED._(S + "status.requesting"),
        retrying: (seconds, code) => RED._(S + "status.retrying", { seconds, code }),
        done: () => RED._(S + "status.bootstrapped"),
        failed: (code) => RED._(S + "status.failed", { code }),
        saveFailed: (code) => RED._(S + "warn.save-failed", { code }),
      },
      decorate: (m) => {
        m.topic = m.topic ?? "mainflux/bootstrap";
      },
    });
  }

  RED.nodes.registerType<Node<FetchCreds>, FetchDef, unknown, FetchCreds>(
    "bootstrap-fetch",
    BootstrapFetchNode,
    {
      credentials: {
        externalKey: { type: "password" },
        encryptionKey: { type: "password" },
      },
    },
  );
};
