/**
 * provision-request: the device side of ThingsBoard provisioning (protocol "thingsboard",
 * the default: flows saved without `protocol` stay ThingsBoard), of Everyware / Kura
 * provisioning (protocol "kura", its settings in ./shared/kura-device-settings.ts) and of
 * Azure IoT Hub DPS (protocol "azure-dps", ./shared/azure-device-settings.ts). Reads
 * its settings and the message's overrides; the conductor (through
 * nodes/shared/device-requests.ts) reuses stored credentials when it may, otherwise asks
 * the server with the protocol's dialect, and the ProvisioningResult is sent on.
 */
import type { Node, NodeAPI, NodeDef } from "node-red";
import { credentialValue } from "../lib/client/env-ref";
import {
  DEFAULT_TIMEOUT_MS,
  endpointUri,
  isPlainScheme,
  isTbScheme,
  type TbCredentialsRequest,
  type TbScheme,
} from "../lib/dialects/thingsboard/client";
import { thingsboardDialect, type TbDeviceSettings } from "../lib/dialects/thingsboard/device-dialect";
import { envOf, retryPolicyOf, seconds, str, tlsClientOptionsOf, warnBadSettings } from "./shared/config";
import { serveDevice, type DeviceMsg } from "./shared/device-requests";
import { localHttpBase } from "./shared/local-http";
import {
  KURA_CREDENTIALS,
  registerKuraStateRoute,
  serveKuraRequest,
  type KuraRequestCreds,
  type KuraRequestDef,
} from "./shared/kura-device-settings";
import {
  AZURE_CREDENTIALS,
  serveAzureRequest,
  type AzureRequestCreds,
  type AzureRequestDef,
} from "./shared/azure-device-settings";

interface ProvisionRequestDef extends NodeDef, KuraRequestDef, AzureRequestDef {
  /** "thingsboard" (also when absent), "kura" or "azure-dps". */
  protocol?: string;
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

interface ProvisionRequestCreds extends KuraRequestCreds, AzureRequestCreds {
  provisionKey?: string;
  provisionSecret?: string;
  token?: string;
  mqttPassword?: string;
  x509Certificate?: string;
  x509PrivateKey?: string;
}

const STATUS = "provision-request.status.";

export = function (RED: NodeAPI) {
  function ProvisionRequestNode(this: Node<ProvisionRequestCreds>, config: ProvisionRequestDef) {
    RED.nodes.createNode(this, config);
    warnBadSettings(RED, this, "provision-request", config);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const node = this;
    const env = envOf(RED, node);
    if (config.protocol === "kura") return serveKuraRequest(RED, node, config, env);
    if (config.protocol === "azure-dps") return serveAzureRequest(RED, node, config, env);
    // "local": ThingsBoard's HTTP API on this Node-RED (a provision-response in the same
    // runtime), over https when the runtime serves https; host and port are not used then.
    const local = config.scheme === "local";
    let endpoint = "";
    let configError: Error | undefined;
    let scheme: TbScheme = isTbScheme(config.scheme) ? config.scheme : "mqtts";
    try {
      if (local) {
        endpoint = localHttpBase(RED, RED._("provision-request.errors.no-http-node"));
        scheme = endpoint.startsWith("https:") ? "https" : "http";
      } else {
        // A port of `${NAME}` arrives replaced by Node-RED (flows util mapEnvVarProperties);
        // one whose variable is not set stays as it is and is refused here, naming it.
        endpoint = endpointUri(scheme, config.host ?? "", config.port);
      }
    } catch (err) {
      configError = err as Error;
    }
    const secure = scheme === "mqtts" || scheme === "https";
    if (isPlainScheme(scheme) && !local) node.warn(RED._("provision-request.warn.plain", { scheme }));
    else if (config.tls) {
      try {
        if (tlsOptions()?.rejectUnauthorized === false) node.warn(RED._("provision-request.warn.no-verify"));
      } catch {
        // A missing tls-config is reported by each request (CONFIG).
      }
    }

    function tlsOptions() {
      if (!secure) return undefined;
      return (
        tlsClientOptionsOf(RED, config.tls, RED._("provision-request.errors.tls-missing")) ?? {
          rejectUnauthorized: true,
        }
      );
    }

    function credentialsFor(msg: DeviceMsg): TbCredentialsRequest {
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

    function settingsFor(msg: DeviceMsg): TbDeviceSettings {
      const c = node.credentials ?? {};
      return {
        endpoint,
        // Empty: the dialect falls back to THINGSBOARD_PROVISION_DEVICE_KEY / _SECRET.
        provisionDeviceKey: credentialValue(c.provisionKey, env),
        provisionDeviceSecret: credentialValue(c.provisionSecret, env),
        credentials: credentialsFor(msg),
        gateway: typeof msg.gateway === "boolean" ? msg.gateway : config.gateway ? true : undefined,
        retryRefusals: config.retryRefusals === true,
      };
    }

    serveDevice(RED, node, {
      dialect: thingsboardDialect,
      settingsFor,
      identitySetting: config.deviceName,
      env,
      storeId: config.store,
      storeKeyTemplate: config.storeKey,
      force: (msg) => msg.reprovision === true || msg.force === true,
      policy: retryPolicyOf(config),
      timeoutMs: seconds(config.timeout, DEFAULT_TIMEOUT_MS / 1000),
      tls: tlsOptions,
      configError,
      onDeploy: config.onDeploy === true,
      texts: {
        reused: () => RED._(STATUS + "reused"),
        attempt: () => RED._(STATUS + "connecting"),
        requesting: () => RED._(STATUS + "requesting"),
        retrying: (secs) => RED._(STATUS + "retrying", { seconds: secs }),
        done: () => RED._(STATUS + "provisioned"),
        failed: (code) => RED._(STATUS + "failed", { reason: code }),
        saveFailed: (code) => RED._("provision-request.warn.save-failed", { code }),
      },
    });
  }

  registerKuraStateRoute(RED);
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
        ...KURA_CREDENTIALS,
        ...AZURE_CREDENTIALS,
      },
    },
  );
};
