/**
 * ThingsBoard device provisioning on the wire (ThingsBoard's device provisioning API,
 * thingsboard.io/docs/user-guide/device-provisioning, and its DeviceProvisionServiceImpl):
 * the request and response JSON, exactly as ThingsBoard's code emits them, and tolerant parsing of what
 * devices and servers send.
 */

import { parseJsonBounded } from "../../util/json-limits";

export const TOPIC_REQUEST = "/provision/request";
export const TOPIC_RESPONSE = "/provision/response";
export const PROVISION_USERNAME = "provision";
export const HTTP_PATH = "/api/v1/provision";
export const COAP_PATH = "api/v1/provision";

export const TB_CREDENTIALS_TYPES = ["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"] as const;
export type TbCredentialsType = (typeof TB_CREDENTIALS_TYPES)[number];

export const MSG_NOT_FOUND = "Provision data was not found!";
export const MSG_FAILURE = "Failed to provision device!";

/** Largest request body the serving side accepts; a documented limit, not ThingsBoard's. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Largest answer a device reads (an X.509 answer carries a certificate chain). */
export const MAX_RESPONSE_BYTES = 1024 * 1024;

export interface TbProvisionRequest {
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  deviceName?: string;
  credentialsType?: TbCredentialsType;
  token?: string;
  clientId?: string;
  username?: string;
  password?: string;
  /** X509_CERTIFICATE: the device's PEM certificate. */
  hash?: string;
  gateway?: boolean;
}

export interface TbMqttBasicValue {
  clientId?: string;
  userName?: string;
  password?: string;
}

export type TbProvisionResponse =
  | { status: "SUCCESS"; credentialsType: TbCredentialsType; credentialsValue: string | TbMqttBasicValue }
  | { status: "NOT_FOUND"; errorMsg: string }
  | { status: "FAILURE"; errorMsg: string };

export const NOT_FOUND_RESPONSE: TbProvisionResponse = Object.freeze({
  status: "NOT_FOUND",
  errorMsg: MSG_NOT_FOUND,
});
export const FAILURE_RESPONSE: TbProvisionResponse = Object.freeze({
  status: "FAILURE",
  errorMsg: MSG_FAILURE,
});

export function encodeRequest(req: TbProvisionRequest): string {
  return JSON.stringify(req);
}

export function encodeResponse(res: TbProvisionResponse): string {
  return JSON.stringify(res);
}

export type ParsedRequest = { ok: true; request: TbProvisionRequest } | { ok: false; error: string };

const optionalString = ["deviceName", "token", "clientId", "username", "password", "hash"] as const;

/**
 * Parses a request body as the server must: anything that is not a JSON object with
 * string key and secret is invalid. The caller decides which failure to answer
 * (ThingsBoard answers NOT_FOUND for a missing key or secret, FAILURE for the rest).
 */
export function parseRequest(body: Buffer | string): ParsedRequest {
  const size = typeof body === "string" ? Buffer.byteLength(body) : body.length;
  if (size > MAX_REQUEST_BYTES) return { ok: false, error: `request larger than ${MAX_REQUEST_BYTES} bytes` };
  const parsed = parseJsonBounded(body, { maxBytes: MAX_REQUEST_BYTES });
  if (!parsed.ok)
    return { ok: false, error: parsed.error === "body is not JSON" ? "request is not JSON" : parsed.error };
  const json = parsed.value;
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { ok: false, error: "request is not a JSON object" };
  }
  const o = json as Record<string, unknown>;
  const out: Partial<TbProvisionRequest> = {};
  for (const k of ["provisionDeviceKey", "provisionDeviceSecret"] as const) {
    if (o[k] === undefined || o[k] === null) out[k] = "";
    else if (typeof o[k] === "string") out[k] = o[k] as string;
    else return { ok: false, error: `${k} must be a string` };
  }
  for (const k of optionalString) {
    if (o[k] === undefined || o[k] === null) continue;
    if (typeof o[k] !== "string") return { ok: false, error: `${k} must be a string` };
    out[k] = o[k] as string;
  }
  if (o.credentialsType !== undefined && o.credentialsType !== null) {
    if (!TB_CREDENTIALS_TYPES.includes(o.credentialsType as TbCredentialsType)) {
      return { ok: false, error: "credentialsType must be ACCESS_TOKEN, MQTT_BASIC or X509_CERTIFICATE" };
    }
    out.credentialsType = o.credentialsType as TbCredentialsType;
  }
  if (o.gateway !== undefined && o.gateway !== null) {
    if (typeof o.gateway !== "boolean") return { ok: false, error: "gateway must be true or false" };
    out.gateway = o.gateway;
  }
  return { ok: true, request: out as TbProvisionRequest };
}

export type ParsedResponse =
  | { status: "SUCCESS"; credentialsType: TbCredentialsType; credentialsValue: string | TbMqttBasicValue }
  | { status: "NOT_FOUND" | "FAILURE"; errorMsg: string }
  | { status: "INVALID"; errorMsg: string };

/**
 * Parses a server's answer as a device must: accepts the field names ThingsBoard's code
 * emits and the older ones its documentation shows (provisionDeviceStatus, accessToken).
 */
export function parseResponse(body: Buffer | string): ParsedResponse {
  const parsed = parseJsonBounded(body, { maxBytes: MAX_RESPONSE_BYTES });
  if (!parsed.ok)
    return {
      status: "INVALID",
      errorMsg: parsed.error === "body is not JSON" ? "answer is not JSON" : `answer: ${parsed.error}`,
    };
  const json = parsed.value;
  if (typeof json !== "object" || json === null)
    return { status: "INVALID", errorMsg: "answer is not an object" };
  const o = json as Record<string, unknown>;
  const status = o.status ?? o.provisionDeviceStatus;
  if (status === "NOT_FOUND" || status === "FAILURE") {
    return { status, errorMsg: typeof o.errorMsg === "string" ? o.errorMsg : String(status) };
  }
  if (status !== "SUCCESS") return { status: "INVALID", errorMsg: "answer has no known status" };
  const type = (o.credentialsType ??
    (o.accessToken !== undefined ? "ACCESS_TOKEN" : undefined)) as TbCredentialsType;
  if (!TB_CREDENTIALS_TYPES.includes(type))
    return { status: "INVALID", errorMsg: "answer has no credentials type" };
  const value = o.credentialsValue ?? o.accessToken;
  if (type === "MQTT_BASIC") {
    if (typeof value === "object" && value !== null)
      return { status, credentialsType: type, credentialsValue: value };
    if (typeof value === "string") {
      try {
        const inner = parseJsonBounded(value, { maxBytes: MAX_RESPONSE_BYTES });
        if (inner.ok && typeof inner.value === "object" && inner.value !== null) {
          return { status, credentialsType: type, credentialsValue: inner.value as TbMqttBasicValue };
        }
      } catch {
        /* fall through */
      }
    }
    return { status: "INVALID", errorMsg: "MQTT_BASIC answer without credentials" };
  }
  if (typeof value !== "string" || value.length === 0) {
    return { status: "INVALID", errorMsg: "answer without credentials value" };
  }
  return { status, credentialsType: type, credentialsValue: value };
}
