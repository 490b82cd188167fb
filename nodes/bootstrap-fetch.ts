/**
 * bootstrap-fetch: the device side of Mainflux bootstrap. Fetches the configuration
 * (plain, Mainflux secure mode, or the stronger GCM mode), keeps it in a credential store
 * and reuses it across restarts; a message with msg.rebootstrap = true fetches again and
 * replaces what is stored only when the new configuration arrived whole.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import type { ConnectionOptions } from "node:tls";
import { credentialValue, resolveEnvRefs } from "../lib/client/env-ref";
import { findReusable, storeKeyFor } from "../lib/client/reuse";
import {
  bootstrap,
  prepare,
  type BootstrapMode,
  type BootstrapRequest,
} from "../lib/dialects/mainflux/client";
import { MainfluxFinalError } from "../lib/dialects/mainflux/errors";
import type { ProvisioningResult } from "../lib/model/result";
import { parseIntervals, type RetryPolicy } from "../lib/retry/policy";
import { saveForReuse, serveDeviceRequests } from "./shared/device-requests";
import { storeFromConfig } from "./shared/store-ref";

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

interface TlsConfigNode {
  addTLSOptions(opts: Record<string, unknown>): Record<string, unknown>;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;
const S = "bootstrap-fetch.";

function num(v: unknown, fallback: number): number {
  if (v === undefined || v === null || v === "") return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : fallback;
}

function isMode(v: unknown): v is BootstrapMode {
  return v === "plain" || v === "secure" || v === "gcm";
}

export = function (RED: NodeAPI) {
  function BootstrapFetchNode(this: Node<FetchCreds>, config: FetchDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const env = (name: string): string | undefined => {
      const v: unknown = RED.util.getSetting(node, name);
      return typeof v === "string" ? v : undefined;
    };
    const mode: BootstrapMode = isMode(config.mode) ? config.mode : "plain";
    const creds = node.credentials ?? {};
    const policy: Partial<RetryPolicy> = {
      intervals: parseIntervals(config.retryIntervals ?? "10, 20, 40, 80, 120"),
      jitter: num(config.retryJitter, 0.5),
      maxAttempts: num(config.retryMax, -1),
    };
    const timeoutMs = Math.round(num(config.timeout, 10) * 1000);

    const requestFor = (externalId: string): BootstrapRequest => ({
      url: resolveEnvRefs(config.url ?? "", env),
      externalId,
      externalKey: credentialValue(creds.externalKey, env),
      mode,
      encryptionKey: mode === "plain" ? undefined : credentialValue(creds.encryptionKey, env),
      keyId: (config.keyId ?? "").trim(),
    });
    const settingId = resolveEnvRefs((config.externalId ?? "").trim(), env);

    // Keys that cannot work are refused at deploy, not at the first request.
    let configError: Error | undefined;
    let tls: ConnectionOptions | undefined;
    try {
      const probe = requestFor(settingId || "deploy-check");
      prepare({ ...probe, externalKey: probe.externalKey || "x" });
      if (config.tls) {
        const tlsNode = RED.nodes.getNode(config.tls) as unknown as TlsConfigNode | null;
        if (!tlsNode || typeof tlsNode.addTLSOptions !== "function")
          throw new MainfluxFinalError("CONFIG", RED._(S + "errors.tls-missing"));
        tls = tlsNode.addTLSOptions({}) as ConnectionOptions;
        if (tls.rejectUnauthorized === false) node.warn(RED._(S + "warn.no-verify"));
      }
    } catch (err) {
      configError = err as Error;
      node.status({ fill: "red", shape: "ring", text: RED._(S + "status.config") });
      node.error(RED._(S + "errors.config", { reason: (err as Error).message }));
    }
    if (!configError && /^http:/i.test(requestFor("x").url) && mode === "plain")
      node.warn(RED._(S + "warn.plain-http"));

    async function handle(msg: Msg, signal: AbortSignal): Promise<ProvisioningResult> {
      if (configError) throw configError;
      const fromMsg = typeof msg.externalId === "string" ? msg.externalId.trim() : "";
      const externalId = fromMsg || settingId;
      if (!externalId) throw new MainfluxFinalError("CONFIG", RED._(S + "errors.no-id"));
      const req = requestFor(externalId);
      let store;
      try {
        store = storeFromConfig(RED, config.store);
      } catch (err) {
        throw new MainfluxFinalError("CONFIG", (err as Error).message);
      }
      const key =
        (typeof msg.storeKey === "string" && msg.storeKey) ||
        storeKeyFor("mainflux", externalId, config.storeKey);
      if (store && msg.rebootstrap !== true) {
        const stored = await findReusable(store, key, {
          dialect: "mainflux",
          endpoint: req.url,
          deviceName: externalId,
        });
        if (stored) {
          node.status({ fill: "green", shape: "dot", text: RED._(S + "status.reused") });
          return stored;
        }
      }
      const result = await bootstrap(req, {
        tls,
        timeoutMs,
        policy,
        waitWhileUnknown: config.waitUnknown === true,
        signal,
        onAttempt: () => node.status({ fill: "blue", shape: "ring", text: RED._(S + "status.requesting") }),
        onRetry: ({ delayMs, error }) =>
          node.status({
            fill: "yellow",
            shape: "ring",
            text: RED._(S + "status.retrying", {
              seconds: Math.ceil(delayMs / 1000),
              code: (error as { code?: string }).code ?? "ERROR",
            }),
          }),
      });
      // Only a whole, parsed configuration reaches this line: the stored one is replaced now.
      if (store)
        await saveForReuse(store, key, result, msg, (code) =>
          node.warn(RED._(S + "warn.save-failed", { code })),
        );
      node.status({ fill: "green", shape: "dot", text: RED._(S + "status.bootstrapped") });
      return result;
    }

    serveDeviceRequests(node, {
      handle,
      // Like inject's "once"; not when the settings cannot work (the error was shown).
      onDeploy: config.onDeploy !== false && !configError,
      failedText: (code) => RED._(S + "status.failed", { code }),
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
