/**
 * provision-request: the device side of ThingsBoard provisioning. Reads its settings and
 * the message's overrides, reuses stored credentials when it may, otherwise asks the
 * server through the client core, and sends the ProvisioningResult on.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import {
  DEFAULT_TIMEOUT_MS,
  endpointUri,
  isPlainScheme,
  isTbScheme,
  provision,
  TbFinalError,
  type TbCredentialsRequest,
  type TbTlsOptions,
} from "../lib/dialects/thingsboard/client";
import { parseIntervals, type RetryPolicy } from "../lib/retry/policy";
import { resolveIdentity } from "../lib/client/identity";
import { credentialValue } from "../lib/client/env-ref";
import { findReusable, storeKeyFor } from "../lib/client/reuse";
import { saveForReuse, serveDeviceRequests } from "./shared/device-requests";
import { storeFromConfig } from "./shared/store-ref";
import type { ProvisioningResult } from "../lib/model/result";

interface ProvisionRequestDef extends NodeDef {
  scheme?: string;
  host?: string;
  port?: string | number;
  tls?: string;
  deviceName?: string;
  credentialsType?: string;
  mqttClientId?: string;
  mqttUsername?: string;
  x509Mode?: string;
  gateway?: boolean;
  timeout?: string | number;
  retryIntervals?: string;
  retryJitter?: string | number;
  retryMax?: string | number;
  retryRefusals?: boolean;
  store?: string;
  storeKey?: string;
  onDeploy?: boolean;
}

interface ProvisionRequestCreds {
  provisionKey?: string;
  provisionSecret?: string;
  token?: string;
  mqttPassword?: string;
  x509Certificate?: string;
  x509PrivateKey?: string;
}

interface TlsConfigNode {
  addTLSOptions(opts: Record<string, unknown>): Record<string, unknown>;
}

type Msg = NodeMessageInFlow & Record<string, unknown>;

const STATUS = "provision-request.status.";

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function num(v: unknown, fallback: number): number {
  if (v === undefined || v === null || v === "") return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : fallback;
}

export = function (RED: NodeAPI) {
  function ProvisionRequestNode(this: Node<ProvisionRequestCreds>, config: ProvisionRequestDef) {
    RED.nodes.createNode(this, config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const env = (name: string): string | undefined => {
      const v: unknown = RED.util.getSetting(node, name);
      return typeof v === "string" ? v : undefined;
    };
    const scheme = isTbScheme(config.scheme) ? config.scheme : "mqtts";
    const policy: Partial<RetryPolicy> = {
      intervals: parseIntervals(str(config.retryIntervals) ?? "10, 20, 40, 80, 120"),
      jitter: num(config.retryJitter, 0.5),
      maxAttempts: num(config.retryMax, -1),
    };
    const timeoutMs = Math.round(num(config.timeout, DEFAULT_TIMEOUT_MS / 1000) * 1000);

    let endpoint: string | undefined;
    let configError: Error | undefined;
    try {
      endpoint = endpointUri(scheme, config.host ?? "", config.port);
    } catch (err) {
      configError = err as Error;
    }
    if (isPlainScheme(scheme)) node.warn(RED._("provision-request.warn.plain", { scheme }));
    else if (config.tls) {
      const tlsNode = RED.nodes.getNode(config.tls) as unknown as TlsConfigNode | null;
      const opts = tlsNode && typeof tlsNode.addTLSOptions === "function" ? tlsNode.addTLSOptions({}) : {};
      if ((opts as TbTlsOptions).rejectUnauthorized === false)
        node.warn(RED._("provision-request.warn.no-verify"));
    }

    function tlsOptions(): TbTlsOptions | undefined {
      if (scheme !== "mqtts" && scheme !== "https") return undefined;
      if (!config.tls) return { rejectUnauthorized: true };
      const tlsNode = RED.nodes.getNode(config.tls) as unknown as TlsConfigNode | null;
      if (!tlsNode || typeof tlsNode.addTLSOptions !== "function") {
        throw new TbFinalError("CONFIG", RED._("provision-request.errors.tls-missing"));
      }
      return tlsNode.addTLSOptions({}) as TbTlsOptions;
    }

    function credentialsFor(msg: Msg): TbCredentialsRequest {
      const type = str(msg.credentialsType) ?? config.credentialsType ?? "ACCESS_TOKEN";
      const c = node.credentials ?? {};
      switch (type) {
        case "MQTT_BASIC":
          return {
            type,
            clientId: str(msg.clientId) ?? config.mqttClientId,
            username: str(msg.username) ?? config.mqttUsername,
            password: str(msg.password) ?? credentialValue(c.mqttPassword, env),
          };
        case "X509_CERTIFICATE": {
          const given = str(msg.certificate) ?? (config.x509Mode === "given" ? c.x509Certificate : undefined);
          const key =
            str(msg.privateKey) ??
            (config.x509Mode === "given" ? credentialValue(c.x509PrivateKey, env) : undefined);
          return { type, certificate: given, privateKey: key };
        }
        case "ACCESS_TOKEN":
          return { type, token: str(msg.token) ?? credentialValue(c.token, env) };
        default:
          // prepareRequest refuses it with a clear CONFIG error.
          return { type: type as "ACCESS_TOKEN" };
      }
    }

    async function handle(msg: Msg, signal: AbortSignal): Promise<ProvisioningResult> {
      if (configError) throw configError;
      const ep = endpoint as string;
      const { name: deviceName } = resolveIdentity(
        {
          messageProperty: "deviceName",
          envVar: "THINGSBOARD_DEVICE_NAME",
          hostname: true,
          randomPrefix: "teg-",
        },
        {
          message: msg.deviceName,
          setting: config.deviceName,
          env,
        },
      );
      let store;
      try {
        store = storeFromConfig(RED, config.store);
      } catch (err) {
        throw new TbFinalError("CONFIG", (err as Error).message);
      }
      const key = str(msg.storeKey) ?? storeKeyFor("thingsboard", deviceName, config.storeKey);
      const force = msg.reprovision === true || msg.force === true;
      if (store && !force) {
        const stored = await findReusable(store, key, { dialect: "thingsboard", endpoint: ep, deviceName });
        if (stored) {
          node.status({ fill: "green", shape: "dot", text: RED._(STATUS + "reused") });
          return stored;
        }
      }
      const c = node.credentials ?? {};
      const result = await provision(
        {
          endpoint: ep,
          provisionDeviceKey: credentialValue(c.provisionKey, env, "THINGSBOARD_PROVISION_DEVICE_KEY"),
          provisionDeviceSecret: credentialValue(
            c.provisionSecret,
            env,
            "THINGSBOARD_PROVISION_DEVICE_SECRET",
          ),
          deviceName,
          credentials: credentialsFor(msg),
          gateway: typeof msg.gateway === "boolean" ? msg.gateway : config.gateway ? true : undefined,
        },
        {
          timeoutMs,
          tls: tlsOptions(),
          signal,
          policy,
          retryRefusals: config.retryRefusals === true,
          onAttempt: () => node.status({ fill: "blue", shape: "ring", text: RED._(STATUS + "connecting") }),
          onRequesting: () =>
            node.status({ fill: "blue", shape: "ring", text: RED._(STATUS + "requesting") }),
          onRetry: ({ delayMs }) =>
            node.status({
              fill: "yellow",
              shape: "ring",
              text: RED._(STATUS + "retrying", { seconds: Math.ceil(delayMs / 1000) }),
            }),
        },
      );
      if (store)
        await saveForReuse(store, key, result, msg, (code) =>
          node.warn(RED._("provision-request.warn.save-failed", { code })),
        );
      node.status({ fill: "green", shape: "dot", text: RED._(STATUS + "provisioned") });
      return result;
    }

    serveDeviceRequests(node, {
      handle,
      onDeploy: config.onDeploy === true,
      failedText: (code) => RED._(STATUS + "failed", { reason: code }),
    });
  }

  RED.nodes.registerType<Node<ProvisionRequestCreds>, ProvisionRequestDef, unknown, ProvisionRequestCreds>(
    "provision-request",
    ProvisionRequestNode,
    {
      credentials: {
        provisionKey: { type: "password" },
        provisionSecret: { type: "password" },
        token: { type: "password" },
        mqttPassword: { type: "password" },
        x509Certificate: { type: "text" },
        x509PrivateKey: { type: "password" },
      },
    },
  );
};
