/**
 * The ThingsBoard device side (ThingsBoard's device provisioning API: /provision/request
 * over MQTT, /api/v1/provision over HTTP and CoAP): builds the request, sends it over
 * MQTT, HTTP or CoAP, and turns the answer into the neutral ProvisioningResult. Retries
 * follow the shared policy through the conductor (lib/client/conductor.ts, with the
 * dialect in device-dialect.ts); NOT_FOUND and FAILURE end it unless the caller asks otherwise.
 */
import type { Credentials, ProvisioningResult } from "../../model/result";
import { finalError, type ProvisioningError } from "../../model/errors";
import type { RetryPolicy } from "../../retry/policy";
import { certificateNotAfter, createDeviceCertificate, type DeviceCertificate } from "../../client/x509";
import {
  encodeRequest,
  COAP_PATH,
  parseResponse,
  type ParsedResponse,
  type TbProvisionRequest,
} from "./wire";
import type { TbExchange, TbTlsOptions } from "./client-common";
import { mqttExchange } from "./client-mqtt";
import { httpExchange, httpProvisionUrl } from "./client-http";
import { coapExchange } from "./client-coap";

export * from "./client-common";

export const TB_SCHEMES = ["mqtts", "mqtt", "https", "http", "coap"] as const;
export type TbScheme = (typeof TB_SCHEMES)[number];

const DEFAULT_PORTS: Record<TbScheme, number> = { mqtts: 8883, mqtt: 1883, https: 443, http: 80, coap: 5683 };

export const DEFAULT_TIMEOUT_MS = 10_000;

export function isTbScheme(s: unknown): s is TbScheme {
  return typeof s === "string" && (TB_SCHEMES as readonly string[]).includes(s);
}

export function defaultPort(scheme: TbScheme): number {
  return DEFAULT_PORTS[scheme];
}

/** True for the schemes that send the provision secret in the clear. */
export function isPlainScheme(scheme: TbScheme): boolean {
  return scheme === "mqtt" || scheme === "http" || scheme === "coap";
}

/** `scheme://host:port`, with IPv6 literals bracketed; throws on an unusable host or port. */
export function endpointUri(scheme: TbScheme, host: string, port?: number | string): string {
  const h = host.trim();
  if (!h) throw finalError("CONFIG", "no server host given");
  const p = port === undefined || port === "" ? defaultPort(scheme) : Number(port);
  if (!Number.isInteger(p) || p < 1 || p > 65535)
    throw finalError("CONFIG", `port ${String(port)} is not valid`);
  const bracketed = h.includes(":") && !h.startsWith("[") ? `[${h}]` : h;
  try {
    return new URL(`${scheme}://${bracketed}:${p}`).href.replace(/\/$/, "");
  } catch {
    throw finalError("CONFIG", `host ${h} is not valid`);
  }
}

/** The transport for a URI's scheme. */
export function exchangeFor(uri: URL): TbExchange {
  switch (uri.protocol) {
    case "mqtt:":
    case "mqtts:":
      return mqttExchange;
    case "http:":
    case "https:":
      return httpExchange;
    case "coap:":
      return coapExchange;
    default:
      throw finalError("CONFIG", `scheme ${uri.protocol} is not supported (mqtts, mqtt, https, http, coap)`);
  }
}

/** The URI a result names as its endpoint: the broker for MQTT, the resource for HTTP/CoAP. */
export function resultEndpoint(uri: URL): string {
  if (uri.protocol === "http:" || uri.protocol === "https:") return httpProvisionUrl(uri).href;
  if (uri.protocol === "coap:") return `coap://${uri.host}/${COAP_PATH}`;
  return `${uri.protocol}//${uri.host}`;
}

export type TbCredentialsRequest =
  | { type: "ACCESS_TOKEN"; token?: string }
  | { type: "MQTT_BASIC"; clientId?: string; username?: string; password?: string }
  | {
      type: "X509_CERTIFICATE";
      /** PEM to send; when absent a key and a self-signed certificate are made here. */
      certificate?: string;
      privateKey?: string;
    };

export interface TbProvisionInput {
  /** mqtts://host:8883, mqtt://, https://host[/base], http://, coap://host:5683 */
  endpoint: string;
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  deviceName: string;
  credentials?: TbCredentialsRequest;
  gateway?: boolean;
}

/** A request ready to send, made once so every retry sends the same key and certificate. */
export interface PreparedRequest {
  uri: URL;
  deviceName: string;
  request: TbProvisionRequest;
  /** X509: the key that stays on the device. */
  privateKey?: string;
  certificate?: string;
  certificateNotAfter?: string;
  secrets: string[];
}

export interface PrepareDeps {
  createCertificate?: (cn: string) => Promise<DeviceCertificate>;
}

function nonEmpty(v: string | undefined): string | undefined {
  return typeof v === "string" && v.length > 0 ? v : undefined;
}

/** Validates the input and builds the request; makes the X.509 key and certificate when needed. */
export async function prepareRequest(
  input: TbProvisionInput,
  deps: PrepareDeps = {},
): Promise<PreparedRequest> {
  let uri: URL;
  try {
    uri = new URL(input.endpoint);
  } catch {
    throw finalError("CONFIG", "the server address is not a valid URI");
  }
  exchangeFor(uri);
  if (!nonEmpty(input.provisionDeviceKey)) {
    throw finalError("CONFIG", "no provision device key (set it, or THINGSBOARD_PROVISION_DEVICE_KEY)");
  }
  if (!nonEmpty(input.provisionDeviceSecret)) {
    throw finalError("CONFIG", "no provision device secret (set it, or THINGSBOARD_PROVISION_DEVICE_SECRET)");
  }
  const deviceName = input.deviceName.trim();
  if (!deviceName) throw finalError("CONFIG", "the device name is blank");
  const request: TbProvisionRequest = {
    deviceName,
    provisionDeviceKey: input.provisionDeviceKey,
    provisionDeviceSecret: input.provisionDeviceSecret,
  };
  const prepared: PreparedRequest = {
    uri,
    deviceName,
    request,
    secrets: [input.provisionDeviceKey, input.provisionDeviceSecret],
  };
  const c = input.credentials ?? { type: "ACCESS_TOKEN" };
  switch (c.type) {
    case "ACCESS_TOKEN":
      request.credentialsType = "ACCESS_TOKEN";
      if (nonEmpty(c.token)) {
        request.token = c.token;
        prepared.secrets.push(c.token as string);
      }
      break;
    case "MQTT_BASIC":
      request.credentialsType = "MQTT_BASIC";
      if (nonEmpty(c.clientId)) request.clientId = c.clientId;
      if (nonEmpty(c.username)) request.username = c.username;
      if (nonEmpty(c.password)) {
        request.password = c.password;
        prepared.secrets.push(c.password as string);
      }
      if (!request.clientId && !request.username) {
        throw finalError("CONFIG", "MQTT_BASIC needs a client id or a user name");
      }
      break;
    case "X509_CERTIFICATE": {
      request.credentialsType = "X509_CERTIFICATE";
      if (nonEmpty(c.certificate)) {
        const notAfter = certificateNotAfter(c.certificate as string);
        if (!notAfter) throw finalError("CONFIG", "the given device certificate is not a PEM certificate");
        prepared.certificate = c.certificate;
        prepared.certificateNotAfter = notAfter;
        if (nonEmpty(c.privateKey)) prepared.privateKey = c.privateKey;
      } else {
        if (nonEmpty(c.privateKey)) {
          throw finalError("CONFIG", "a private key was given without its certificate");
        }
        const made = await (deps.createCertificate ?? createDeviceCertificate)(deviceName);
        prepared.certificate = made.certificate;
        prepared.privateKey = made.privateKey;
        prepared.certificateNotAfter = made.notAfter;
      }
      request.hash = prepared.certificate;
      break;
    }
    default:
      throw finalError("CONFIG", "credentials type must be ACCESS_TOKEN, MQTT_BASIC or X509_CERTIFICATE");
  }
  if (typeof input.gateway === "boolean") request.gateway = input.gateway;
  return prepared;
}

/** Removes the device's own secrets from a text the server wrote (it may echo the request). */
function scrub(text: string, secrets: string[]): string {
  let out = text.slice(0, 300);
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join("(hidden)");
  return out;
}

/**
 * ThingsBoard's two refusals in the shared vocabulary: NOT_FOUND (no profile with this key
 * and secret) stays NOT_FOUND, FAILURE (the device exists, the name is refused) is REFUSED;
 * `status` keeps ThingsBoard's own word.
 */
function refusalOf(
  prepared: PreparedRequest,
  answer: { status: "NOT_FOUND" | "FAILURE"; errorMsg: string },
): ProvisioningError {
  return finalError(
    answer.status === "NOT_FOUND" ? "NOT_FOUND" : "REFUSED",
    `ThingsBoard answered ${answer.status}: ${scrub(answer.errorMsg, prepared.secrets)}`,
    { status: answer.status },
  );
}

/** Maps a parsed answer to the neutral result, or throws the ProvisioningError it stands for. */
export function resultFromAnswer(
  prepared: PreparedRequest,
  answer: ParsedResponse,
  now: Date = new Date(),
): ProvisioningResult {
  if (answer.status === "NOT_FOUND" || answer.status === "FAILURE") throw refusalOf(prepared, answer);
  if (answer.status !== "SUCCESS") {
    throw finalError("INVALID_ANSWER", `not a ThingsBoard answer: ${answer.errorMsg}`);
  }
  const credentials: Credentials = { type: answer.credentialsType };
  let expiresAt: string | undefined;
  const value = answer.credentialsValue;
  if (answer.credentialsType === "MQTT_BASIC") {
    const v = (typeof value === "object" ? value : {}) as Record<string, unknown>;
    const str = (x: unknown) => (typeof x === "string" && x.length > 0 ? x : undefined);
    const clientId = str(v.clientId);
    const username = str(v.userName) ?? str(v.username);
    const password = str(v.password);
    if (clientId) credentials.clientId = clientId;
    if (username) credentials.username = username;
    if (password) credentials.password = password;
  } else if (answer.credentialsType === "X509_CERTIFICATE") {
    // ThingsBoard echoes the certificate (sometimes without PEM armour): keep a PEM.
    const echoed =
      typeof value === "string" && value.includes("-----BEGIN CERTIFICATE-----") ? value : undefined;
    const certificate = echoed ?? prepared.certificate;
    if (certificate) credentials.certificate = certificate;
    if (prepared.privateKey) credentials.privateKey = prepared.privateKey;
    expiresAt = (certificate && certificateNotAfter(certificate)) ?? prepared.certificateNotAfter;
  } else {
    credentials.token = value as string;
  }
  const result: ProvisioningResult = {
    dialect: "thingsboard",
    endpoint: resultEndpoint(prepared.uri),
    device: { name: prepared.deviceName },
    proof: "provision-key",
    credentials,
    configuration: typeof prepared.request.gateway === "boolean" ? { gateway: prepared.request.gateway } : {},
    obtainedAt: now.toISOString(),
    reused: false,
  };
  if (expiresAt) result.expiresAt = expiresAt;
  return result;
}

export interface TbAttemptOptions {
  timeoutMs?: number;
  tls?: TbTlsOptions;
  signal?: AbortSignal;
  onRequesting?: () => void;
  /** Replaces the transport chosen by scheme (tests, or a transport of the caller's). */
  exchange?: TbExchange;
}

/** One attempt: send, wait for the answer (at most timeoutMs), map it. */
export async function provisionOnce(
  prepared: PreparedRequest,
  opts: TbAttemptOptions = {},
): Promise<ProvisioningResult> {
  const exchange = opts.exchange ?? exchangeFor(prepared.uri);
  const raw = await exchange(prepared.uri, encodeRequest(prepared.request), {
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    tls: opts.tls,
    signal: opts.signal,
    onRequesting: opts.onRequesting,
  });
  return resultFromAnswer(prepared, parseResponse(raw));
}

export interface TbProvisionOptions extends TbAttemptOptions, PrepareDeps {
  policy?: Partial<RetryPolicy>;
  /** Retry NOT_FOUND and FAILURE as well (a profile that is being set up). Off by default. */
  retryRefusals?: boolean;
  onAttempt?: (attempt: number) => void;
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  random?: () => number;
}

/** True for ThingsBoard's two answers a user may choose to retry (not an HTTP 404). */
export function isRefusal(err: unknown): boolean {
  const status = (err as { status?: unknown } | undefined)?.status;
  return status === "NOT_FOUND" || status === "FAILURE";
}
