/**
 * Shared access signatures as Azure DPS takes them, signed (device side) and checked
 * (serving side), and the per-device key of a symmetric-key enrollment group.
 *
 * A token is `SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn=registration`
 * where signature = base64(HMAC-SHA256(base64decode(key), sr + "\n" + se)) and the resource
 * is `{idScope}/registrations/{registrationId}` (azure-iot-common SharedAccessSignature.create,
 * called by azure-iot-security-symmetric-key with the resource raw). Microsoft's SDKs
 * disagree on encoding `sr` (Node: raw; Embedded C: `%2f`; Python sample: `%2F`), but each
 * signs exactly what it sends: so the checker computes the HMAC over `sr` exactly as it
 * came, and only then compares the decoded resource, case-insensitively, with the one
 * expected. The signature is compared in constant time.
 *
 * Group keys: Azure derives an enrollment group member's key as
 * base64(HMAC-SHA256(base64decode(groupKey), registrationId)) ("Provision devices using
 * symmetric key enrollment groups", the computeDerivedSymmetricKey of Microsoft's samples).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const DPS_KEY_NAME = "registration";
/** Tokens the device side makes live this long (the Node SDK: anHourFromNow). */
export const TOKEN_LIFETIME_S = 3600;
/** The longest token accepted, so a SAS token cannot live for years (ours, generous). */
export const MAX_TOKEN_LIFETIME_S = 365 * 24 * 3600;
const MAX_TOKEN_LENGTH = 2048;

export function dpsResource(idScope: string, registrationId: string): string {
  return `${idScope}/registrations/${registrationId}`;
}

/** True for base64 of at least 16 bytes: DPS keys are 32 or 64 bytes of base64. */
export function isBase64Key(key: unknown): key is string {
  if (typeof key !== "string" || key.length < 24 || key.length > 1024) return false;
  if (!/^[A-Za-z0-9+/]+={0,2}$/u.test(key) || key.length % 4 !== 0) return false;
  return Buffer.from(key, "base64").length >= 16;
}

function hmac(keyB64: string, text: string): Buffer {
  return createHmac("sha256", Buffer.from(keyB64, "base64")).update(text, "utf8").digest();
}

/** A device's key from its enrollment group's key. */
export function deriveDeviceKey(groupKeyB64: string, registrationId: string): string {
  return hmac(groupKeyB64, registrationId).toString("base64");
}

/** How `sr` is written: as is (Node SDK), or URL-encoded with lower or upper-case hex (C SDK, Python). */
export type ResourceEncoding = "raw" | "lower" | "upper";

function encodeResource(resource: string, how: ResourceEncoding): string {
  if (how === "raw") return resource;
  const e = encodeURIComponent(resource);
  return how === "lower" ? e.replace(/%[0-9A-F]{2}/gu, (s) => s.toLowerCase()) : e;
}

/** A SAS token for `resource`, valid until `expiresAtS` (seconds since the epoch). */
export function signSas(
  resource: string,
  keyB64: string,
  expiresAtS: number,
  opts: { keyName?: string; encoding?: ResourceEncoding } = {},
): string {
  const sr = encodeResource(resource, opts.encoding ?? "raw");
  const se = String(Math.floor(expiresAtS));
  const sig = encodeURIComponent(hmac(keyB64, `${sr}\n${se}`).toString("base64"));
  const skn = opts.keyName ?? DPS_KEY_NAME;
  return `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}${skn ? `&skn=${encodeURIComponent(skn)}` : ""}`;
}

export interface ParsedSas {
  /** `sr` exactly as sent: what was signed. */
  srAsSent: string;
  /** `se` exactly as sent. */
  seAsSent: string;
  resource: string;
  expiresAtS: number;
  signature: Buffer;
  keyName?: string;
}

function decode(v: string): string | undefined {
  try {
    return decodeURIComponent(v);
  } catch {
    return undefined;
  }
}

/** Splits a token into its fields; undefined when it is not a SAS token. */
export function parseSas(token: unknown): ParsedSas | undefined {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) return undefined;
  const prefix = "SharedAccessSignature ";
  if (!token.startsWith(prefix)) return undefined;
  const fields = new Map<string, string>();
  for (const part of token.slice(prefix.length).split("&")) {
    const eq = part.indexOf("=");
    if (eq < 1) return undefined;
    const name = part.slice(0, eq);
    if (fields.has(name)) return undefined;
    fields.set(name, part.slice(eq + 1));
  }
  const sr = fields.get("sr");
  const sig = fields.get("sig");
  const se = fields.get("se");
  if (sr === undefined || sig === undefined || se === undefined || !/^\d{1,12}$/u.test(se)) return undefined;
  const resource = decode(sr);
  const sigB64 = decode(sig);
  if (resource === undefined || sigB64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/u.test(sigB64))
    return undefined;
  const skn = fields.get("skn");
  const keyName = skn === undefined ? undefined : decode(skn);
  if (skn !== undefined && keyName === undefined) return undefined;
  return {
    srAsSent: sr,
    seAsSent: se,
    resource,
    expiresAtS: Number(se),
    signature: Buffer.from(sigB64, "base64"),
    keyName,
  };
}

export type SasVerdict =
  | { ok: true; keyIndex: number }
  | { ok: false; reason: "malformed" | "resource" | "expired" | "key-name" | "signature" };

/**
 * Checks a token for `expectedResource` against one or more keys (an enrollment's primary
 * and secondary key): the HMAC over `sr` as sent, then the decoded resource compared
 * case-insensitively, the expiry and the key name. `keyIndex` says which key matched.
 */
export function verifySas(
  token: unknown,
  expectedResource: string,
  keysB64: readonly string[],
  nowMs: number,
  opts: { keyName?: string; maxLifetimeS?: number } = {},
): SasVerdict {
  const p = parseSas(token);
  if (!p) return { ok: false, reason: "malformed" };
  if (p.resource.toLowerCase() !== expectedResource.toLowerCase()) return { ok: false, reason: "resource" };
  const nowS = nowMs / 1000;
  if (p.expiresAtS <= nowS || p.expiresAtS > nowS + (opts.maxLifetimeS ?? MAX_TOKEN_LIFETIME_S))
    return { ok: false, reason: "expired" };
  const wanted = opts.keyName ?? DPS_KEY_NAME;
  if (p.keyName !== undefined && p.keyName !== wanted) return { ok: false, reason: "key-name" };
  const signed = `${p.srAsSent}\n${p.seAsSent}`;
  let match = -1;
  // Every key is tried, so the time taken does not say which one matched.
  keysB64.forEach((key, i) => {
    const expected = hmac(key, signed);
    if (expected.length === p.signature.length && timingSafeEqual(expected, p.signature) && match < 0)
      match = i;
  });
  return match >= 0 ? { ok: true, keyIndex: match } : { ok: false, reason: "signature" };
}
