/**
 * provision-request with protocol "kura" (Everyware / Kura): the dialog's fields to the
 * dialect's settings (lib/dialects/kura/device-dialect.ts), the status texts, and the
 * message Node-RED's core MQTT nodes take to connect to the account broker. The settings
 * are ESF's provisioning settings (enabled, provisioned, ca-authentication, broker-url,
 * account-name, username, password, activation-key, client-id, timeout, retry-interval,
 * retry-max-attempts); `provisioned` is not a field: it is a stored result, which every
 * later deploy reuses instead of asking again (Kura sets enabled = false and
 * provisioned = true after a success), until a message asks again (msg.reprovision).
 */
import { arch, cpus, hostname, release, totalmem, type as osType } from "node:os";
import type { Node, NodeAPI, NodeDef } from "node-red";
import { credentialValue, type EnvLookup } from "../../lib/client/env-ref";
import { defaultKuraClientId, provisionBrokerOf } from "../../lib/dialects/kura/device";
import {
  isMissingRequest,
  kuraDialect,
  type KuraDialectSettings,
} from "../../lib/dialects/kura/device-dialect";
import { DEFAULT_TOPICS, type KuraDeviceIdentity } from "../../lib/dialects/kura/namespace";
import type { ProvisioningError } from "../../lib/model/errors";
import type { ProvisioningResult } from "../../lib/model/result";
import type { RetryPolicy } from "../../lib/retry/policy";
import { splitCertificates } from "../../lib/pki/pem";
import { num, resolveInline, seconds, str, text, tlsClientOptionsOf } from "./config";
import { serveDevice, type DeviceMsg } from "./device-requests";
import { storeFromConfig } from "./store-ref";
import { storeKeyFor } from "../../lib/client/reuse";

export interface KuraRequestDef extends NodeDef {
  tls?: string;
  timeout?: string | number;
  retryMax?: string | number;
  store?: string;
  storeKey?: string;
  kuraEnabled?: boolean;
  kuraCaAuthentication?: boolean;
  kuraBrokerUrl?: string;
  kuraAccountName?: string;
  kuraUsername?: string;
  kuraClientId?: string;
  kuraRetryInterval?: string | number;
  kuraModelName?: string;
  kuraModelId?: string;
  kuraSerialNumber?: string;
  kuraFirmwareVersion?: string;
  kuraOsVersion?: string;
  kuraApplicationIds?: string;
  kuraTopicRequest?: string;
  kuraTopicReply?: string;
  kuraTopicCompleted?: string;
}

export interface KuraRequestCreds {
  kuraPassword?: string;
  kuraActivationKey?: string;
}

/** The credentials provision-request registers for this protocol. */
export const KURA_CREDENTIALS = {
  kuraPassword: { type: "password" },
  kuraActivationKey: { type: "password" },
} as const;

export const KURA_DEFAULT_TIMEOUT_S = 10;
export const KURA_DEFAULT_RETRY_INTERVAL_S = 10;

/**
 * The device's identity as Kura's BIRTH certificate carries it: the dialog's model, serial
 * number, firmware and OS versions and application ids, and what Kura reads from the
 * machine itself (eclipse/kura LifecyclePayloadBuilder: display name, OS, its version and
 * architecture, processors, memory in kB), here from node:os.
 */
export function kuraIdentityOf(def: KuraRequestDef): KuraDeviceIdentity {
  const ids = (text(def.kuraApplicationIds) ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return {
    displayName: safe(hostname),
    modelName: text(def.kuraModelName) ?? "Node-RED",
    modelId: text(def.kuraModelId),
    serialNumber: text(def.kuraSerialNumber),
    firmwareVersion: text(def.kuraFirmwareVersion),
    os: safe(osType),
    osVersion: text(def.kuraOsVersion) ?? safe(release),
    osArch: safe(arch),
    availableProcessors: safe(() => String(cpus().length)),
    totalMemory: safe(() => String(Math.round(totalmem() / 1024))),
    ...(ids.length > 0 ? { applicationIds: ids } : {}),
  };
}

function safe(f: () => string): string | undefined {
  try {
    return f() || undefined;
  } catch {
    return undefined;
  }
}

/** retry-interval and retry-max-attempts as the shared policy: a fixed interval, no jitter (Kura waits the interval). */
export function kuraPolicyOf(def: KuraRequestDef): Partial<RetryPolicy> {
  return {
    intervals: [num(def.kuraRetryInterval, KURA_DEFAULT_RETRY_INTERVAL_S, 0.001)],
    jitter: 0,
    maxAttempts: num(def.retryMax, -1),
  };
}

/**
 * What Node-RED's core `mqtt in` / `mqtt out` take to connect to a broker given in a
 * message, with an mqtt-broker config node of "Connect automatically" off (@node-red/nodes
 * core/network/10-mqtt.js: msg.action "connect", msg.broker passed to the broker node's
 * setOptions: `broker` (a URL with "://" is used as it is), `port`, `clientid`, `username`,
 * `password`, `usetls`, `verifyservercert`, `protocolVersion`; `force` cycles a connection
 * that is up). Kura's transport speaks MQTT 3.1.1 (protocolVersion 4).
 */
export function mqttBrokerOf(result: ProvisioningResult): Record<string, unknown> | undefined {
  const uri = result.configuration.servers?.[0]?.uri;
  if (!uri) return undefined;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  const secure = url.protocol === "mqtts:" || url.protocol === "ssl:" || url.protocol === "wss:";
  const scheme = url.protocol === "ssl:" ? "mqtts:" : url.protocol === "tcp:" ? "mqtt:" : url.protocol;
  const port = Number(
    url.port || (scheme === "mqtts:" ? 8883 : scheme === "mqtt:" ? 1883 : secure ? 443 : 80),
  );
  // WHATWG URL keeps an IPv6 host in brackets, as a URL needs it.
  const path = scheme === "ws:" || scheme === "wss:" ? url.pathname : "";
  const broker = `${scheme}//${url.hostname}:${port}${path}`;
  const c = result.credentials;
  return {
    broker,
    port,
    clientid: c.clientId ?? result.device.id ?? "",
    username: c.username ?? "",
    password: c.password ?? "",
    usetls: secure,
    verifyservercert: secure,
    protocolVersion: 4,
    force: true,
  };
}

/** The status's reason for a failure, as a key under provision-request.kura.reason. */
export function kuraReasonOf(e: ProvisioningError): string | undefined {
  if (isMissingRequest(e)) return "no-request";
  if (e.code === "DENIED" && e.status === 403) return "wrong-key";
  if (e.code === "TLS" && e.message.startsWith("ca-authentication")) return "untrusted-chain";
  if (e.code === "TIMEOUT") return "no-answer";
  return undefined;
}

const T = "provision-request.kura.";

/** What the dialog's read-only "provisioned" shows: whether the store holds a result for the dialog's client id. */
export interface KuraState {
  provisioned: boolean;
  obtainedAt?: string;
}

interface KuraStateNode {
  kuraState?: () => Promise<KuraState>;
}

/**
 * GET <admin>/provision-request/<node id>/kura-state for the dialog: ESF shows
 * `provisioned` read-only, set after a success. It names no secret, only whether a stored,
 * unexpired result exists and when it was obtained; Node-RED's admin permission applies.
 */
export function registerKuraStateRoute(RED: NodeAPI): void {
  // Node-RED's runtime always has an admin app, mounted or not; a stand-in runtime may not.
  if (typeof RED.httpAdmin?.get !== "function") return;
  RED.httpAdmin.get(
    "/provision-request/:id/kura-state",
    RED.auth.needsPermission("provision-request.read"),
    (req, res) => {
      const node = RED.nodes.getNode(String(req.params.id)) as (Node & KuraStateNode) | null;
      if (!node || typeof node.kuraState !== "function") return void res.status(404).json({});
      node.kuraState().then(
        (state) => res.json(state),
        () => res.json({ provisioned: false }),
      );
    },
  );
}

/** provision-request for protocol "kura": everything the node does, over serveDevice(). */
export function serveKuraRequest(
  RED: NodeAPI,
  node: Node<KuraRequestCreds>,
  config: KuraRequestDef,
  env: EnvLookup,
): void {
  let brokerUrl = text(config.kuraBrokerUrl) ?? "";
  let configError: Error | undefined;
  let secure = true;
  try {
    // mqtt://127.0.0.1:${PROVISION_MQTT_PORT}, as the example does: a port kept in one place.
    brokerUrl = resolveInline(brokerUrl, env, (name) => RED._(T + "errors.env-unset", { name }));
    secure = provisionBrokerOf(brokerUrl).secure;
  } catch (err) {
    configError = err as Error;
  }
  if (!configError && !secure) node.warn(RED._(T + "warn.plain"));

  const tlsOptions = () => tlsClientOptionsOf(RED, config.tls, RED._("provision-request.errors.tls-missing"));
  if (config.tls) {
    try {
      if (tlsOptions()?.rejectUnauthorized === false) node.warn(RED._("provision-request.warn.no-verify"));
    } catch {
      // A missing tls-config is reported by each request (CONFIG).
    }
  }
  const policy = kuraPolicyOf(config);
  const max = policy.maxAttempts === -1 ? "∞" : String(policy.maxAttempts);
  const reason = (e: ProvisioningError) => {
    const key = kuraReasonOf(e);
    return key ? RED._(T + "reason." + key) : e.code;
  };
  const identity = kuraIdentityOf(config);

  function settingsFor(msg: DeviceMsg): KuraDialectSettings {
    const c = node.credentials ?? {};
    const ca = config.tls ? tlsOptions()?.ca : undefined;
    const trusted = (Array.isArray(ca) ? ca : ca ? [ca] : []).flatMap((p) =>
      splitCertificates(typeof p === "string" || Buffer.isBuffer(p) ? p : undefined),
    );
    return {
      brokerUrl,
      accountName: text(config.kuraAccountName) ?? "",
      username: text(config.kuraUsername),
      password: credentialValue(c.kuraPassword, env),
      activationKey: str(msg.activationKey) ?? (credentialValue(c.kuraActivationKey, env) || undefined),
      identity,
      caAuthentication: config.kuraCaAuthentication === true,
      trustedCas: trusted,
      topics: {
        request: text(config.kuraTopicRequest) ?? DEFAULT_TOPICS.request,
        reply: text(config.kuraTopicReply) ?? DEFAULT_TOPICS.reply,
        completed: text(config.kuraTopicCompleted) ?? DEFAULT_TOPICS.completed,
      },
      // A user who asks for retries waits for the provision request to appear (see the dialect).
      retryRefused: policy.maxAttempts !== 1,
    };
  }

  const clientId = text(config.kuraClientId) ?? defaultKuraClientId();
  (node as Node & KuraStateNode).kuraState = async () => {
    const store = storeFromConfig(RED, "provision-request", config.store);
    if (!store || !clientId) return { provisioned: false };
    const entry = await store.get(storeKeyFor("kura", clientId, config.storeKey));
    return entry && !entry.expired
      ? { provisioned: true, obtainedAt: entry.meta.obtainedAt }
      : { provisioned: false };
  };

  serveDevice(RED, node, {
    dialect: kuraDialect,
    settingsFor,
    // client-id, else the MAC address of the main network interface, as Kura does.
    identitySetting: clientId,
    env,
    storeId: config.store,
    storeKeyTemplate: config.storeKey,
    force: (msg) => msg.reprovision === true || msg.force === true,
    policy,
    timeoutMs: seconds(config.timeout, KURA_DEFAULT_TIMEOUT_S),
    tls: () => (secure ? (tlsOptions() ?? { rejectUnauthorized: true }) : undefined),
    configError,
    onDeploy: config.kuraEnabled !== false,
    decorate: (msg) => {
      const broker = mqttBrokerOf(msg.payload as ProvisioningResult);
      if (!broker) return;
      msg.action = "connect";
      msg.broker = broker;
    },
    texts: {
      reused: () => RED._(T + "status.provisioned"),
      attempt: () => RED._(T + "status.connecting"),
      requesting: () => RED._(T + "status.requesting"),
      retrying: (secs, _code, attempt, e) =>
        RED._(T + "status.retrying", { attempt: attempt + 1, max, seconds: secs, reason: reason(e) }),
      done: () => RED._(T + "status.provisioned"),
      failed: (code, e) =>
        kuraReasonOf(e) && kuraReasonOf(e) !== "no-answer"
          ? RED._(T + "status.refused", { reason: reason(e) })
          : RED._("provision-request.status.failed", { reason: kuraReasonOf(e) ? reason(e) : code }),
      saveFailed: (code) => RED._("provision-request.warn.save-failed", { code }),
    },
  });
}
