/**
 * Azure IoT Hub Device Provisioning Service: the wire facts both sides of this package
 * share (topics, user names, paths, bodies, statuses, error bodies). Read from Microsoft's
 * device SDKs (Azure/azure-iot-sdk-node: provisioning/transport/mqtt/src/mqtt.ts and
 * provisioning/transport/http/src/http.ts; Azure/azure-sdk-for-c:
 * sdk/inc/azure/iot/az_iot_provisioning_client.h) and Azure's documentation ("Device
 * Provisioning Service MQTT support", "Device Registration REST API", "Troubleshooting
 * DPS" for the error codes).
 *
 * Over MQTT (3.1.1, TLS on 8883 only): the client id is the registration id; the user name
 * `{idScope}/registrations/{registrationId}/api-version={v}`, to which the SDKs append
 * `&ClientVersion=<url-encoded user agent>`; the password a SAS token (./sas.ts), or none
 * with X.509. The device subscribes to `$dps/registrations/res/#`, publishes its request to
 * `$dps/registrations/PUT/iotdps-register/?$rid={rid}`, and polls with
 * `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`; each
 * answer comes on `$dps/registrations/res/{status}/?$rid={rid}` with `&retry-after={s}`
 * while the operation runs. Over HTTPS: `PUT /{idScope}/registrations/{id}/register`,
 * `GET /{idScope}/registrations/{id}/operations/{operationId}`, and the Device
 * Registration Status Lookup `POST /{idScope}/registrations/{id}`, each with
 * `?api-version=` and the SAS token in `Authorization`.
 */

/** The api-version Microsoft's Node and C device SDKs send. */
export const AZURE_DPS_API_VERSION = "2019-03-31";
/** Azure's global device endpoint. */
export const AZURE_DPS_GLOBAL_HOST = "global.azure-devices-provisioning.net";
export const AZURE_DPS_MQTT_PORT = 8883;
/** What the service tells a device to wait between polls when it says nothing else (DPS: 3 s). */
export const DEFAULT_RETRY_AFTER_S = 3;
/** The api-version of IoT Hub's device MQTT user name, for the hub a device is assigned to. */
export const IOT_HUB_API_VERSION = "2021-04-12";

export const RESPONSE_FILTER = "$dps/registrations/res/#";
const REGISTER_PREFIX = "$dps/registrations/PUT/iotdps-register/?";
const STATUS_PREFIX = "$dps/registrations/GET/iotdps-get-operationstatus/?";
const RESPONSE_PREFIX = "$dps/registrations/res/";

/** Registration ids: Azure's rule, at most 128 alphanumerics and `-._:`, ending alphanumeric or `-`. */
const REGISTRATION_ID = /^[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9-]$/u;
/** Id scopes: Azure issues `0ne` and 8 hex digits; any short alphanumeric word is accepted. */
const ID_SCOPE = /^[A-Za-z0-9]{1,64}$/u;

export function isRegistrationId(v: unknown): v is string {
  return typeof v === "string" && REGISTRATION_ID.test(v);
}

export function isIdScope(v: unknown): v is string {
  return typeof v === "string" && ID_SCOPE.test(v);
}

export function registerTopic(rid: string): string {
  return `${REGISTER_PREFIX}$rid=${encodeURIComponent(rid)}`;
}

export function operationStatusTopic(rid: string, operationId: string): string {
  return `${STATUS_PREFIX}$rid=${encodeURIComponent(rid)}&operationId=${encodeURIComponent(operationId)}`;
}

export function responseTopic(status: number, rid: string, retryAfterS?: number): string {
  const after = retryAfterS === undefined ? "" : `&retry-after=${retryAfterS}`;
  return `${RESPONSE_PREFIX}${status}/?$rid=${encodeURIComponent(rid)}${after}`;
}

export type DpsRequestTopic =
  { kind: "register"; rid: string } | { kind: "status"; rid: string; operationId: string };

/** A device's publish topic, or undefined when it is none of the two requests. */
export function parseRequestTopic(topic: string): DpsRequestTopic | undefined {
  if (topic.length > 1024) return undefined;
  let kind: "register" | "status";
  let query: string;
  if (topic.startsWith(REGISTER_PREFIX)) {
    kind = "register";
    query = topic.slice(REGISTER_PREFIX.length);
  } else if (topic.startsWith(STATUS_PREFIX)) {
    kind = "status";
    query = topic.slice(STATUS_PREFIX.length);
  } else return undefined;
  const q = new URLSearchParams(query);
  const rid = q.get("$rid");
  if (rid === null || rid === "" || rid.length > 128) return undefined;
  if (kind === "register") return { kind, rid };
  const operationId = q.get("operationId");
  if (operationId === null || operationId === "" || operationId.length > 256) return undefined;
  return { kind, rid, operationId };
}

export interface DpsResponseTopic {
  status: number;
  rid: string;
  retryAfterS?: number;
}

/** An answer's topic, as the Node SDK reads it: the status, `$rid` and `retry-after`. */
export function parseResponseTopic(topic: string): DpsResponseTopic | undefined {
  if (!topic.startsWith(RESPONSE_PREFIX) || topic.length > 1024) return undefined;
  const rest = topic.slice(RESPONSE_PREFIX.length);
  const slash = rest.indexOf("/?");
  if (slash < 1) return undefined;
  const status = Number(rest.slice(0, slash));
  if (!Number.isInteger(status) || status < 100 || status > 599) return undefined;
  const q = new URLSearchParams(rest.slice(slash + 2));
  const rid = q.get("$rid");
  if (rid === null) return undefined;
  const after = q.get("retry-after");
  const retryAfterS = after === null ? undefined : Number(after);
  return {
    status,
    rid,
    retryAfterS:
      retryAfterS !== undefined && Number.isFinite(retryAfterS) && retryAfterS >= 0 ? retryAfterS : undefined,
  };
}

export function mqttUserName(
  idScope: string,
  registrationId: string,
  apiVersion = AZURE_DPS_API_VERSION,
): string {
  return `${idScope}/registrations/${registrationId}/api-version=${apiVersion}`;
}

export interface DpsUserName {
  idScope: string;
  registrationId: string;
  apiVersion: string;
  /** Further fields, as the SDKs add them (`ClientVersion`). */
  extra: Record<string, string>;
}

/** Reads a CONNECT's user name tolerantly: extra `&name=value` fields after the api-version are kept aside. */
export function parseMqttUserName(userName: string): DpsUserName | undefined {
  if (userName.length > 2048) return undefined;
  const m = /^([^/]+)\/registrations\/([^/]+)\/(.*)$/su.exec(userName);
  if (!m) return undefined;
  const q = new URLSearchParams(m[3]);
  const apiVersion = q.get("api-version");
  if (!apiVersion) return undefined;
  const extra: Record<string, string> = {};
  for (const [k, v] of q) if (k !== "api-version") extra[k] = v;
  return { idScope: m[1], registrationId: m[2], apiVersion, extra };
}

export type DpsHttpRequest =
  | { kind: "register"; idScope: string; registrationId: string; apiVersion?: string }
  | { kind: "status"; idScope: string; registrationId: string; operationId: string; apiVersion?: string }
  | { kind: "lookup"; idScope: string; registrationId: string; apiVersion?: string };

/** The three HTTPS requests by method and URL; undefined for anything else. */
export function parseHttpRequest(method: string, url: string): DpsHttpRequest | undefined {
  if (url.length > 2048) return undefined;
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  const apiVersion =
    q < 0 ? undefined : (new URLSearchParams(url.slice(q + 1)).get("api-version") ?? undefined);
  const parts = path.split("/").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return "\u0000";
    }
  });
  // "", idScope, "registrations", id, ...
  if (parts.length < 4 || parts[0] !== "" || parts[2] !== "registrations") return undefined;
  const idScope = parts[1];
  const registrationId = parts[3];
  if (method === "PUT" && parts.length === 5 && parts[4] === "register")
    return { kind: "register", idScope, registrationId, apiVersion };
  if (method === "GET" && parts.length === 6 && parts[4] === "operations" && parts[5] !== "")
    return { kind: "status", idScope, registrationId, operationId: parts[5], apiVersion };
  if (method === "POST" && parts.length === 4) return { kind: "lookup", idScope, registrationId, apiVersion };
  return undefined;
}

export function httpRegisterPath(
  idScope: string,
  registrationId: string,
  apiVersion = AZURE_DPS_API_VERSION,
) {
  return `/${encodeURIComponent(idScope)}/registrations/${encodeURIComponent(registrationId)}/register?api-version=${apiVersion}`;
}

export function httpStatusPath(
  idScope: string,
  registrationId: string,
  operationId: string,
  apiVersion = AZURE_DPS_API_VERSION,
) {
  return `/${encodeURIComponent(idScope)}/registrations/${encodeURIComponent(registrationId)}/operations/${encodeURIComponent(operationId)}?api-version=${apiVersion}`;
}

export function httpLookupPath(idScope: string, registrationId: string, apiVersion = AZURE_DPS_API_VERSION) {
  return `/${encodeURIComponent(idScope)}/registrations/${encodeURIComponent(registrationId)}?api-version=${apiVersion}`;
}

/** A registration's state in DPS's words. */
export type RegistrationStatus = "unassigned" | "assigning" | "assigned" | "failed" | "disabled";
export type RegistrationSubstatus =
  "initialAssignment" | "deviceDataMigrated" | "deviceDataReset" | "reprovisionedToInitialAssignment";

/** What a device sends to register: unknown keys are ignored (`tpm`, `csr`). */
export interface RegistrationRequestBody {
  registrationId: string;
  payload?: unknown;
}

export interface RegistrationState {
  registrationId: string;
  createdDateTimeUtc?: string;
  assignedHub?: string;
  deviceId?: string;
  status: RegistrationStatus;
  substatus?: RegistrationSubstatus;
  errorCode?: number;
  errorMessage?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
  /** The custom allocation's payload for the device. */
  payload?: unknown;
  symmetricKey?: { registrationId?: string; enrollmentGroupId?: string };
  x509?: {
    enrollmentGroupId?: string;
    clientCertificateInfo?: { subjectName?: string; sha1Thumbprint?: string; sha256Thumbprint?: string };
  };
}

/** The body of a 202 (register, poll) and of the final 200. */
export interface OperationStatusBody {
  operationId: string;
  status: RegistrationStatus;
  registrationState?: RegistrationState;
}

export interface DpsErrorBody {
  /** HTTP status times 1000 plus a number (401002: unauthorized). */
  errorCode: number;
  trackingId: string;
  message: string;
  timestampUtc: string;
}

/**
 * Azure's error codes used by this package (Azure "Troubleshooting DPS": the HTTP status
 * times 1000 plus a number): what each side says and reads.
 */
export const DPS_ERRORS = Object.freeze({
  badRequest: { status: 400, errorCode: 400001, message: "The request is malformed." },
  invalidRegistrationId: { status: 400, errorCode: 400004, message: "The registration id is invalid." },
  unauthorized: { status: 401, errorCode: 401002, message: "The device is unauthorized for service." },
  notFound: { status: 404, errorCode: 404201, message: "The registration was not found." },
  operationNotFound: { status: 404, errorCode: 404202, message: "The operation was not found." },
  tooLarge: { status: 413, errorCode: 413001, message: "The request is too large." },
  throttled: { status: 429, errorCode: 429001, message: "Operations are being throttled by the service." },
  internal: { status: 500, errorCode: 500000, message: "The service failed; try again later." },
} as const);

export function errorBody(
  err: { errorCode: number; message: string },
  trackingId: string,
  now: Date = new Date(),
): DpsErrorBody {
  return { errorCode: err.errorCode, trackingId, message: err.message, timestampUtc: now.toISOString() };
}
