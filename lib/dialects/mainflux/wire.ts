/**
 * What travels on the wire in Mainflux bootstrap: the answer's JSON in both generations
 * of field names (thing_id/thing_key/channels, and the older mainflux_id/mainflux_key/
 * mainflux_channels), turned into the package's neutral ProvisioningResult, and the same
 * answer built from a stored configuration on the serving side.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { ProvisioningResult } from "../../model/result";
import { toPem } from "../../pki/pem";
import { finalError, type ProvisioningError } from "../../model/errors";
import { parseJsonBounded } from "../../util/json-limits";

export const BOOTSTRAP_PATH = "/things/bootstrap/";
export const SECURE_PATH = "/things/bootstrap/secure/";
/** The most a client reads of an answer; a configuration with certificates fits easily. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/**
 * A configuration's content is the operator's JSON: allow more nesting than a request.
 * Sizes are the reader's to bound (maxResponseBytes), not the parser's.
 */
const CONTENT_DEPTH = 64;
/** The most the management endpoints read of a request body. */
export const MAX_MANAGE_BODY_BYTES = 64 * 1024;

export interface Channel {
  id: string;
  name?: string;
  metadata?: unknown;
}

/** The answer's fields, whichever generation the service speaks. */
export interface BootstrapAnswer {
  thingId: string;
  thingKey: string;
  channels: Channel[];
  content?: string;
  clientCert?: string;
  clientKey?: string;
  caCert?: string;
}

export type FieldGeneration = "thing" | "mainflux";

function bad(message: string): ProvisioningError {
  return finalError("INVALID_ANSWER", message);
}

function optString(o: Record<string, unknown>, k: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw bad(`the answer's ${k} is not a string`);
  return v;
}

function channelsOf(v: unknown): Channel[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad("the answer's channels are not a list");
  return v.map((c): Channel => {
    if (typeof c === "string") return { id: c };
    if (typeof c !== "object" || c === null || typeof (c as Channel).id !== "string")
      throw bad("a channel in the answer has no id");
    const ch = c as Record<string, unknown>;
    const out: Channel = { id: ch.id as string };
    if (typeof ch.name === "string" && ch.name !== "") out.name = ch.name;
    if (ch.metadata !== undefined && ch.metadata !== null) out.metadata = ch.metadata;
    return out;
  });
}

/** Reads an answer's JSON text; throws INVALID_ANSWER (final) when it is not one. */
export function parseAnswer(text: string): BootstrapAnswer {
  const parsed = parseJsonBounded(text, { maxBytes: Infinity, maxDepth: CONTENT_DEPTH });
  if (!parsed.ok)
    throw bad(
      parsed.error === "body is not JSON"
        ? "the bootstrap answer is not JSON"
        : `the bootstrap answer: ${parsed.error}`,
    );
  const v = parsed.value;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw bad("the bootstrap answer is not an object");
  const o = v as Record<string, unknown>;
  const thingId = optString(o, "thing_id") ?? optString(o, "mainflux_id");
  const thingKey = optString(o, "thing_key") ?? optString(o, "mainflux_key");
  if (!thingId || !thingKey) throw bad("the bootstrap answer has no thing id and key");
  const a: BootstrapAnswer = {
    thingId,
    thingKey,
    channels: channelsOf(o.channels !== undefined ? o.channels : o.mainflux_channels),
  };
  const content = o.content;
  if (content !== undefined && content !== null && content !== "")
    a.content = typeof content === "string" ? content : JSON.stringify(content);
  const cert = optString(o, "client_cert");
  const key = optString(o, "client_key");
  const ca = optString(o, "ca_cert");
  if (cert) a.clientCert = cert;
  if (key) a.clientKey = key;
  if (ca) a.caCert = ca;
  return a;
}

/** `content` parsed when it is JSON, as it came when it is not. */
export function parseContent(content: string | undefined): unknown {
  if (content === undefined) return undefined;
  const parsed = parseJsonBounded(content, { maxBytes: Infinity, maxDepth: CONTENT_DEPTH });
  return parsed.ok ? parsed.value : content;
}

function derOf(value: string, what: string): Buffer {
  const compact = value.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 === 1)
    throw bad(`${what} is neither PEM nor base64 DER`);
  return Buffer.from(compact, "base64");
}

/** A certificate as PEM: PEM passes through; base64 DER is checked and wrapped. */
export function certificatePem(value: string, what: string): string {
  if (value.includes("-----BEGIN")) return value.endsWith("\n") ? value : value + "\n";
  const der = derOf(value, what);
  try {
    return new X509Certificate(der).toString();
  } catch {
    throw bad(`${what} is base64 but not a DER certificate`);
  }
}

/** A private key as PEM: PEM passes through; base64 DER keeps its encoding (PKCS#8, PKCS#1 or SEC1). */
export function privateKeyPem(value: string, what: string): string {
  if (value.includes("-----BEGIN")) return value.endsWith("\n") ? value : value + "\n";
  const der = derOf(value, what);
  const kinds: Array<["pkcs8" | "pkcs1" | "sec1", string]> = [
    ["pkcs8", "PRIVATE KEY"],
    ["pkcs1", "RSA PRIVATE KEY"],
    ["sec1", "EC PRIVATE KEY"],
  ];
  for (const [type, label] of kinds) {
    try {
      createPrivateKey({ key: der, format: "der", type });
      return toPem(label, der);
    } catch {
      // try the next encoding
    }
  }
  throw bad(`${what} is base64 but not a DER private key`);
}

/** The neutral result of one bootstrap. */
export function toResult(
  a: BootstrapAnswer,
  ctx: { endpoint: string; externalId: string; obtainedAt?: string },
): ProvisioningResult {
  const credentials: ProvisioningResult["credentials"] = { type: "THING_KEY", token: a.thingKey };
  if (a.clientCert) credentials.certificate = certificatePem(a.clientCert, "client_cert");
  if (a.clientKey) credentials.privateKey = privateKeyPem(a.clientKey, "client_key");
  if (a.caCert) credentials.caCertificates = [certificatePem(a.caCert, "ca_cert")];
  const configuration: ProvisioningResult["configuration"] = { channels: a.channels };
  if (a.content !== undefined) configuration.content = parseContent(a.content);
  return {
    dialect: "mainflux",
    endpoint: ctx.endpoint,
    device: { id: a.thingId, name: ctx.externalId },
    proof: "external-key",
    credentials,
    configuration,
    obtainedAt: ctx.obtainedAt ?? new Date().toISOString(),
    reused: false,
  };
}

/** The JSON a service sends for a configuration, in the chosen generation of field names. */
export function answerJson(a: BootstrapAnswer, generation: FieldGeneration = "thing"): string {
  const channels = a.channels.map((c) => {
    const o: Record<string, unknown> = { id: c.id };
    if (c.name) o.name = c.name;
    if (c.metadata !== undefined) o.metadata = c.metadata;
    return o;
  });
  const o: Record<string, unknown> =
    generation === "mainflux"
      ? { mainflux_id: a.thingId, mainflux_key: a.thingKey, mainflux_channels: channels }
      : { thing_id: a.thingId, thing_key: a.thingKey, channels };
  if (a.content) o.content = a.content;
  if (a.clientCert) o.client_cert = a.clientCert;
  if (a.clientKey) o.client_key = a.clientKey;
  if (a.caCert) o.ca_cert = a.caCert;
  return JSON.stringify(o);
}

/** Upstream's error body: `error` the inner cause (may be empty), `message` the summary. */
export function errorJson(message: string, error = ""): string {
  return JSON.stringify({ error, message });
}

/** The upstream service's messages, so a client written for Mainflux sees what it expects. */
export const MESSAGES = {
  validation: "something went wrong with the request",
  bearerKey: "missing or invalid bearer entity key",
  bearerToken: "missing or invalid bearer user token",
  missingId: "missing entity id",
  notFound: "entity not found",
  readConfig: "failed to read bootstrap configuration",
  externalKey: "failed to get bootstrap configuration for given external key",
  externalKeySecure: "failed to get bootstrap configuration for given encrypted external key",
  authentication: "failed to perform authentication over the entity",
  malformed: "malformed entity specification",
  contentType: "unsupported content type",
  conflict: "entity already exists",
  state: "invalid bootstrap state",
  unavailable: "failed to receive response from Things service",
} as const;
