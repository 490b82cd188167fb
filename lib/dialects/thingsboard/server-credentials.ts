/**
 * Credentials a ThingsBoard-style server hands out: what the device asked for (its
 * credentialsType and values win, as in ThingsBoard), the profile's default type
 * otherwise, with missing values generated from a cryptographic source.
 */

import { X509Certificate } from "node:crypto";
import type { Credentials } from "../../model/result";
import { randomAlphanumeric } from "../../util/secrets";
import {
  TB_CREDENTIALS_TYPES,
  type TbCredentialsType,
  type TbProvisionRequest,
  type TbProvisionResponse,
} from "./wire";

/** ThingsBoard's generated access tokens are 20 alphanumeric characters. */
export const TOKEN_LENGTH = 20;
/** Longest token, client id, user name or password accepted from a device or a flow. */
export const MAX_VALUE_LENGTH = 256;

export type Issued = { ok: true; credentials: Credentials } | { ok: false; detail: string };

export function isTbCredentialsType(t: unknown): t is TbCredentialsType {
  return TB_CREDENTIALS_TYPES.includes(t as TbCredentialsType);
}

function value(v: unknown, what: string): { ok: true; v?: string } | { ok: false; detail: string } {
  if (v === undefined || v === null || v === "") return { ok: true };
  if (typeof v !== "string") return { ok: false, detail: `${what} must be a string` };
  if (v.length > MAX_VALUE_LENGTH) return { ok: false, detail: `${what} is longer than ${MAX_VALUE_LENGTH}` };
  return { ok: true, v };
}

/** True when the text parses as an X.509 certificate (PEM). */
export function isCertificate(pem: string): boolean {
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) return false;
  try {
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}

/**
 * Completes credentials of one type: generates a missing token, client id, user name or
 * password; requires and checks the certificate for X509_CERTIFICATE.
 */
export function completeCredentials(c: Partial<Credentials>): Issued {
  if (!isTbCredentialsType(c.type)) {
    return { ok: false, detail: "credentials type must be ACCESS_TOKEN, MQTT_BASIC or X509_CERTIFICATE" };
  }
  switch (c.type) {
    case "ACCESS_TOKEN": {
      const t = value(c.token, "token");
      if (!t.ok) return t;
      return { ok: true, credentials: { type: c.type, token: t.v ?? randomAlphanumeric(TOKEN_LENGTH) } };
    }
    case "MQTT_BASIC": {
      const id = value(c.clientId, "clientId");
      const user = value(c.username, "username");
      const pass = value(c.password, "password");
      for (const r of [id, user, pass]) if (!r.ok) return r;
      return {
        ok: true,
        credentials: {
          type: c.type,
          clientId: (id.ok && id.v) || randomAlphanumeric(TOKEN_LENGTH),
          username: (user.ok && user.v) || randomAlphanumeric(TOKEN_LENGTH),
          password: (pass.ok && pass.v) || randomAlphanumeric(TOKEN_LENGTH),
        },
      };
    }
    case "X509_CERTIFICATE": {
      if (typeof c.certificate !== "string" || c.certificate.length === 0) {
        return { ok: false, detail: "X509_CERTIFICATE needs the device certificate (hash)" };
      }
      if (!isCertificate(c.certificate))
        return { ok: false, detail: "the device certificate does not parse" };
      return { ok: true, credentials: { type: c.type, certificate: c.certificate } };
    }
  }
}

/** The credentials the device's request asks for, with the profile's type as the default. */
export function credentialsFromRequest(req: TbProvisionRequest, defaultType: TbCredentialsType): Issued {
  const type = req.credentialsType ?? defaultType;
  return completeCredentials({
    type,
    token: req.token,
    clientId: req.clientId,
    username: req.username,
    password: req.password,
    certificate: req.hash,
  });
}

/**
 * Credentials chosen by the flow: a type alone means "generate that type"; values given
 * for the same type as the device's fill in over the device's.
 */
export function credentialsFromFlow(given: Partial<Credentials>, fromRequest: Credentials): Issued {
  const sameType = given.type === undefined || given.type === fromRequest.type;
  const merged: Partial<Credentials> = sameType ? { ...fromRequest } : { type: given.type };
  for (const k of ["token", "clientId", "username", "password", "certificate"] as const) {
    if (given[k] !== undefined) merged[k] = given[k];
  }
  return completeCredentials(merged);
}

/** The SUCCESS answer exactly as ThingsBoard's JsonConverter writes it. */
export function successResponse(c: Credentials): TbProvisionResponse {
  const credentialsType = c.type as TbCredentialsType;
  if (credentialsType === "MQTT_BASIC") {
    return {
      status: "SUCCESS",
      credentialsType,
      credentialsValue: { clientId: c.clientId, userName: c.username, password: c.password },
    };
  }
  const v = credentialsType === "X509_CERTIFICATE" ? c.certificate : c.token;
  return { status: "SUCCESS", credentialsType, credentialsValue: v ?? "" };
}

/**
 * The ids by which ThingsBoard keeps credentials unique across devices (its
 * device_credentials.credentials_id: the access token; for MQTT_BASIC the client id and
 * user name together, DeviceCredentialsServiceImpl.formatSimpleMqttCredentials; for
 * X.509 a hash of the certificate). Ours hash the certificate's DER (SHA-256), so that
 * two PEM spellings of one certificate are the same credentials.
 */
export function credentialIds(c: Credentials): string[] {
  switch (c.type) {
    case "ACCESS_TOKEN":
      return c.token ? [`ACCESS_TOKEN:${c.token}`] : [];
    case "MQTT_BASIC":
      return c.clientId || c.username ? [`MQTT_BASIC:${c.clientId ?? ""}|${c.username ?? ""}`] : [];
    case "X509_CERTIFICATE": {
      if (!c.certificate) return [];
      try {
        return [`X509_CERTIFICATE:${new X509Certificate(c.certificate).fingerprint256}`];
      } catch {
        return [`X509_CERTIFICATE:${c.certificate.replace(/\s+/g, "")}`];
      }
    }
    default:
      return [];
  }
}
