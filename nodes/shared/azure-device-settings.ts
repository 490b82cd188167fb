/**
 * provision-request with protocol "azure-dps" (Azure IoT Hub Device Provisioning): the
 * dialog's fields to the dialect's settings (lib/dialects/azure-dps/settings.ts), the
 * status texts. One node onboards many devices by message: msg.registrationId names the
 * device, and with an enrollment group's key the node derives that device's key itself
 * (the group key stays in the node's credentials). A stored result is reused on every
 * later deploy and restart, so a device registers once; msg.reprovision registers again
 * (after a factory reset, or when the hub refused the credentials).
 */
import type { ConnectionOptions } from "node:tls";
import type { Node, NodeAPI, NodeDef } from "node-red";
import { credentialValue, type EnvLookup } from "../../lib/client/env-ref";
import { azureDpsDialect } from "../../lib/dialects/azure-dps/device-dialect";
import { certificateCn } from "../../lib/dialects/azure-dps/device-prepare";
import type { AzureAttestation, AzureDeviceSettings } from "../../lib/dialects/azure-dps/settings";
import { AZURE_DPS_GLOBAL_HOST } from "../../lib/dialects/azure-dps/wire";
import { finalError, type ProvisioningError } from "../../lib/model/errors";
import { resolveInline, retryPolicyOf, seconds, str, text, tlsClientOptionsOf } from "./config";
import { serveDevice, type DeviceMsg } from "./device-requests";
import { azureDemoPkiOf } from "./azure-demo-pki";

export interface AzureRequestDef extends NodeDef {
  tls?: string;
  timeout?: string | number;
  retryIntervals?: string;
  retryJitter?: string | number;
  retryMax?: string | number;
  store?: string;
  storeKey?: string;
  onDeploy?: boolean;
  azureHost?: string;
  azureTransport?: string;
  azureIdScope?: string;
  azureRegistrationId?: string;
  azureAttestation?: string;
  azurePayload?: string;
  /** Trust the demo CA of `<userDir>/azure-dps-demo-pki` (for trying out only). */
  azureDemoCa?: boolean;
}

export interface AzureRequestCreds {
  azureKey?: string;
}

/** The credentials provision-request registers for this protocol. */
export const AZURE_CREDENTIALS = { azureKey: { type: "password" } } as const;

/** A registration takes a request and a poll or two, each after DPS's retry-after (3 s). */
export const AZURE_DEFAULT_TIMEOUT_S = 30;

const T = "provision-request.azure.";

function attestationOf(v: unknown): AzureAttestation {
  return v === "group-key" || v === "x509" ? v : "symmetric-key";
}

/** The first certificate of the tls-config, as PEM text. */
function certificateOf(tls: ConnectionOptions | undefined): string | undefined {
  const cert = Array.isArray(tls?.cert) ? tls?.cert[0] : tls?.cert;
  if (cert === undefined) return undefined;
  return Buffer.isBuffer(cert) ? cert.toString("utf8") : String(cert);
}

/** The subject CN of a PEM certificate (X.509 enrollments take it as the registration id); undefined when unreadable. */
export function commonNameOf(pem: string | undefined): string | undefined {
  if (!pem) return undefined;
  try {
    return certificateCn(pem);
  } catch {
    return undefined;
  }
}

/** The dialog's JSON payload; a CONFIG error names the field, never the value. */
function payloadOf(RED: NodeAPI, v: unknown): unknown {
  const t = text(v);
  if (t === undefined) return undefined;
  try {
    return JSON.parse(t) as unknown;
  } catch {
    throw finalError("CONFIG", RED._(T + "errors.payload"));
  }
}

/** The status's reason for a refusal: Azure's error code when the service gave one. */
export function azureReasonOf(e: ProvisioningError): string {
  const m = /\b(\d{6})\b/u.exec(e.message);
  if (m) return `${e.code} ${m[1]}`;
  return typeof e.status === "number" ? `${e.code} ${e.status}` : e.code;
}

/** provision-request for protocol "azure-dps": everything the node does, over serveDevice(). */
export function serveAzureRequest(
  RED: NodeAPI,
  node: Node<AzureRequestCreds>,
  config: AzureRequestDef,
  env: EnvLookup,
): void {
  const unset = (name: string) => RED._(T + "errors.env-unset", { name });
  let configError: Error | undefined;
  let host = AZURE_DPS_GLOBAL_HOST;
  let idScope = "";
  let dialogPayload: unknown;
  try {
    host = resolveInline(text(config.azureHost) ?? AZURE_DPS_GLOBAL_HOST, env, unset);
    idScope = resolveInline(text(config.azureIdScope) ?? "", env, unset);
    dialogPayload = payloadOf(RED, config.azurePayload);
  } catch (err) {
    configError = err as Error;
  }
  const attestation = attestationOf(config.azureAttestation);
  const transport = config.azureTransport === "https" ? "https" : "mqtt";

  let demoCa: string | undefined;
  if (config.azureDemoCa === true) {
    try {
      demoCa = azureDemoPkiOf(RED, (dir) => RED._(T + "warn.demo-pki", { dir })).caCert;
    } catch (err) {
      configError ??= finalError("CONFIG", RED._(T + "errors.demo-pki", { reason: (err as Error).message }));
    }
  }
  const tlsOptions = (): ConnectionOptions => {
    const o = tlsClientOptionsOf(RED, config.tls, RED._("provision-request.errors.tls-missing")) ?? {
      rejectUnauthorized: true,
    };
    if (!demoCa) return o;
    const own = o.ca === undefined ? [] : Array.isArray(o.ca) ? o.ca : [o.ca];
    return { ...o, ca: [demoCa, ...own] };
  };
  if (config.tls) {
    try {
      if (tlsOptions().rejectUnauthorized === false) node.warn(RED._("provision-request.warn.no-verify"));
    } catch {
      // A missing tls-config is reported by each request (CONFIG).
    }
  }
  if (attestation === "x509" && !config.tls && !configError)
    configError = finalError("CONFIG", RED._(T + "errors.x509-tls"));

  function settingsFor(msg: DeviceMsg): AzureDeviceSettings {
    const c = node.credentials ?? {};
    const key = credentialValue(c.azureKey, env);
    return {
      host,
      transport,
      idScope: str(msg.idScope) ?? idScope,
      attestation,
      key: key || undefined,
      clientCertificate: attestation === "x509" ? certificateOf(tlsOptions()) : undefined,
      payload: msg.provisioningPayload !== undefined ? msg.provisioningPayload : dialogPayload,
    };
  }

  let identitySetting = text(config.azureRegistrationId);
  // X.509: the registration id is the certificate's CN (Azure's rule), unless the dialog names one.
  if (!identitySetting && attestation === "x509" && !configError) {
    try {
      identitySetting = commonNameOf(certificateOf(tlsOptions()));
    } catch {
      // A missing tls-config is reported by each request (CONFIG).
    }
  }

  serveDevice(RED, node, {
    dialect: azureDpsDialect,
    settingsFor,
    identitySetting,
    env,
    storeId: config.store,
    storeKeyTemplate: config.storeKey,
    force: (msg) => msg.reprovision === true || msg.force === true,
    policy: retryPolicyOf(config),
    timeoutMs: seconds(config.timeout, AZURE_DEFAULT_TIMEOUT_S),
    tls: tlsOptions,
    configError,
    onDeploy: config.onDeploy === true,
    texts: {
      reused: () => RED._(T + "status.reused"),
      attempt: () => RED._(T + "status.connecting"),
      requesting: () => RED._(T + "status.registering"),
      retrying: (secs, _code, _attempt, e) =>
        RED._(T + "status.retrying", { seconds: secs, reason: azureReasonOf(e) }),
      done: () => RED._(T + "status.assigned"),
      failed: (_code, e) => RED._(T + "status.failed", { reason: azureReasonOf(e) }),
      saveFailed: (code) => RED._("provision-request.warn.save-failed", { code }),
    },
  });
}
