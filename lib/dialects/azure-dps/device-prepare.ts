/**
 * Azure DPS device side: the settings checked and the request built once, before any
 * byte is sent (DeviceDialect.prepare), so that every retry sends the same registration
 * with the same key. The key itself is kept, not a token: a SAS token is signed at each
 * attempt (device-sas.ts), since an attempt may come hours after the first.
 */
import { X509Certificate } from "node:crypto";
import { finalError } from "../../model/errors";
import { deriveDeviceKey, isBase64Key } from "./sas";
import type { AzureAttestation, AzureDeviceSettings } from "./settings";
import {
  AZURE_DPS_API_VERSION,
  AZURE_DPS_GLOBAL_HOST,
  AZURE_DPS_MQTT_PORT,
  isIdScope,
  isRegistrationId,
} from "./wire";

/** Largest answer read (MQTT payload or HTTPS body), in bytes. */
export const DEFAULT_MAX_ANSWER_BYTES = 64 * 1024;
/** Custom payloads larger than this are refused before sending (Azure: 4 KB of payload; ours, generous). */
const MAX_PAYLOAD_BYTES = 16 * 1024;
const HTTPS_PORT = 443;

export interface DpsTarget {
  transport: "mqtt" | "https";
  /** Host name or address, without brackets. */
  hostname: string;
  port: number;
  /** `mqtts://host:port` or `https://host:port`, as results name it. */
  endpoint: string;
}

export interface AzurePrepared {
  target: DpsTarget;
  idScope: string;
  registrationId: string;
  attestation: AzureAttestation;
  /** The device key (derived from the group key for "group-key"); absent for x509. Never logged. */
  deviceKey?: string;
  /** The serialized registration request, sent as is on every attempt. */
  body: string;
  apiVersion: string;
  maxAnswerBytes: number;
}

/**
 * The service a `host` setting names: `name`, `name:port`, `[v6]`, `[v6]:port`; empty is
 * Azure's global endpoint. Default ports: 8883 (MQTT over TLS, the only port DPS offers)
 * and 443 (HTTPS). Throws CONFIG.
 */
export function dpsTargetOf(host: string | undefined, transport: "mqtt" | "https"): DpsTarget {
  if (transport !== "mqtt" && transport !== "https")
    throw finalError("CONFIG", `the transport ${String(transport)} is not mqtt or https`);
  const h = (host ?? "").trim() || AZURE_DPS_GLOBAL_HOST;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9\-._]+))(?::(\d{1,5}))?$/u.exec(h);
  if (!m)
    throw finalError("CONFIG", "the provisioning host must be a host name or address, optionally with :port");
  const hostname = m[1] ?? m[2];
  const port = m[3] === undefined ? (transport === "mqtt" ? AZURE_DPS_MQTT_PORT : HTTPS_PORT) : Number(m[3]);
  if (port < 1 || port > 65535)
    throw finalError("CONFIG", `the provisioning host's port ${port} is out of range`);
  const shown = m[1] !== undefined ? `[${hostname}]` : hostname;
  return {
    transport,
    hostname,
    port,
    endpoint: `${transport === "mqtt" ? "mqtts" : "https"}://${shown}:${port}`,
  };
}

/** The subject CN of a PEM certificate; undefined when it has none. Throws CONFIG when it does not parse. */
export function certificateCn(pem: string | Buffer): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    throw finalError("CONFIG", "the client certificate does not parse");
  }
  // X509Certificate.subject is one "name=value" per line.
  const line = cert.subject.split("\n").find((l) => l.startsWith("CN="));
  return line?.slice(3);
}

/** An X.509 registration id is the certificate's CN (Azure: "the subject name ... is the registration ID"). */
export function checkCertificateIdentity(pem: string | Buffer, registrationId: string): void {
  const cn = certificateCn(pem);
  if (cn !== registrationId)
    throw finalError(
      "CONFIG",
      cn === undefined
        ? "the client certificate has no CN: with X.509 the CN is the registration id"
        : `the registration id ${registrationId} is not the client certificate's CN ${cn}`,
    );
}

function serializeBody(registrationId: string, payload: unknown): string {
  const body: { registrationId: string; payload?: unknown } = { registrationId };
  // The Node SDK sends `payload` only when truthy (provisioning/transport/mqtt/src/mqtt.ts).
  if (payload !== undefined && payload !== null && payload !== "") body.payload = payload;
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch {
    throw finalError("CONFIG", "the custom payload cannot be written as JSON");
  }
  if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES)
    throw finalError("CONFIG", `the custom payload is larger than ${MAX_PAYLOAD_BYTES} bytes`);
  return text;
}

/** Validates everything and builds the request; throws a final CONFIG error, never naming a key. */
export function prepareAzureDevice(s: AzureDeviceSettings, registrationId: string): AzurePrepared {
  const target = dpsTargetOf(s.host, s.transport);
  if (!isIdScope(s.idScope)) throw finalError("CONFIG", "the id scope is missing or not alphanumeric");
  if (!isRegistrationId(registrationId))
    throw finalError(
      "CONFIG",
      "the registration id must be at most 128 letters, digits and - . _ :, ending in a letter, digit or -",
    );
  const attestation = s.attestation;
  let deviceKey: string | undefined;
  if (attestation === "symmetric-key" || attestation === "group-key") {
    if (!isBase64Key(s.key))
      throw finalError(
        "CONFIG",
        attestation === "group-key"
          ? "the enrollment group key is missing or not base64 of at least 16 bytes"
          : "the device key is missing or not base64 of at least 16 bytes",
      );
    deviceKey = attestation === "group-key" ? deriveDeviceKey(s.key, registrationId) : s.key;
  } else if (attestation === "x509") {
    if (s.clientCertificate) checkCertificateIdentity(s.clientCertificate, registrationId);
  } else
    throw finalError(
      "CONFIG",
      `the attestation ${String(attestation)} is not symmetric-key, group-key or x509`,
    );
  const apiVersion = s.apiVersion || AZURE_DPS_API_VERSION;
  if (!/^[0-9A-Za-z-]{1,32}$/u.test(apiVersion)) throw finalError("CONFIG", "the api-version is not valid");
  const maxAnswerBytes = s.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES;
  if (!Number.isInteger(maxAnswerBytes) || maxAnswerBytes < 1024)
    throw finalError("CONFIG", "the largest answer must be a whole number of at least 1024 bytes");
  return {
    target,
    idScope: s.idScope,
    registrationId,
    attestation,
    deviceKey,
    body: serializeBody(registrationId, s.payload),
    apiVersion,
    maxAnswerBytes,
  };
}
