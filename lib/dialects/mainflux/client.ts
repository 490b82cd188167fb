/**
 * The device side of Mainflux bootstrap: one GET for the configuration, plain or in one
 * of the secure modes, under the shared retry policy. Status codes become coded errors;
 * a 4xx is final except a 404 the caller chose to keep waiting on (a device may ask
 * before its configuration was uploaded).
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { ConnectionOptions } from "node:tls";
import type { ProvisioningResult } from "../../model/result";
import { validateRetryPolicy, type RetryPolicy } from "../../retry/policy";
import { runWithRetry, type RetryHooks } from "../../retry/run";
import {
  cfbAuthorization,
  cfbDecrypt,
  cfbKey,
  checkKeyId,
  gcmAuthorization,
  gcmKey,
  gcmOpenResponse,
  KeyError,
  THING_PREFIX,
} from "./crypto";
import { describeTlsFailure, tlsFailureOf } from "../../transports/tls-failure";
import { MainfluxError, MainfluxFinalError } from "./errors";
import { BOOTSTRAP_PATH, MAX_RESPONSE_BYTES, parseAnswer, SECURE_PATH, toResult } from "./wire";
import { parseJsonBounded } from "../../util/json-limits";

export type BootstrapMode = "plain" | "secure" | "gcm";

export interface BootstrapRequest {
  /** Base URL of the bootstrap service (http(s)://host:port[/prefix]). */
  url: string;
  externalId: string;
  externalKey: string;
  mode?: BootstrapMode;
  /** "secure": 16, 24 or 32 bytes as configured; "gcm": 64 hex or 32 bytes. */
  encryptionKey?: string;
  /** "gcm" only. */
  keyId?: string;
}

export interface BootstrapOptions {
  tls?: ConnectionOptions;
  timeoutMs?: number;
  maxResponseBytes?: number;
  policy?: Partial<RetryPolicy>;
  /** Keep retrying while the service says 404 (the configuration is not uploaded yet). */
  waitWhileUnknown?: boolean;
  signal?: AbortSignal;
  onAttempt?: (n: number) => void;
  onRetry?: RetryHooks["onRetry"];
  now?: () => number;
}

export const DEFAULT_TIMEOUT_MS = 10000;

/** The prepared, validated request: keys checked before any byte is sent. */
interface Prepared {
  url: URL;
  endpoint: string;
  headers: () => { authorization: string; requestId?: string };
  decode: (body: Buffer, requestId?: string) => string;
}

function normaliseBase(url: string): URL {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    throw new MainfluxFinalError("CONFIG", "the bootstrap URL is not a URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new MainfluxFinalError("CONFIG", "the bootstrap URL must start with http:// or https://");
  return u;
}

/** Checks everything that can be checked without the network (throws CONFIG errors). */
export function prepare(req: BootstrapRequest, now: () => number = Date.now): Prepared {
  const base = normaliseBase(req.url);
  if (!req.externalId) throw new MainfluxFinalError("CONFIG", "an external id is required");
  if (!req.externalKey) throw new MainfluxFinalError("CONFIG", "an external key is required");
  const mode = req.mode ?? "plain";
  const path = (mode === "plain" ? BOOTSTRAP_PATH : SECURE_PATH) + encodeURIComponent(req.externalId);
  const url = new URL(base.pathname.replace(/\/+$/, "") + path, base);
  const endpoint = url.toString();
  try {
    if (mode === "plain") {
      return {
        url,
        endpoint,
        headers: () => ({ authorization: THING_PREFIX + req.externalKey }),
        decode: (body) => body.toString("utf8"),
      };
    }
    if (mode === "secure") {
      const key = cfbKey(req.encryptionKey ?? "");
      return {
        url,
        endpoint,
        headers: () => ({ authorization: cfbAuthorization(key, req.externalKey) }),
        decode: (body) => {
          try {
            return cfbDecrypt(key, body).toString("utf8");
          } catch {
            throw new MainfluxFinalError("BAD_RESPONSE", "the secure answer is shorter than its IV");
          }
        },
      };
    }
    if (mode === "gcm") {
      const key = gcmKey(req.encryptionKey ?? "");
      const keyId = checkKeyId(req.keyId ?? "");
      return {
        url,
        endpoint,
        headers: () => {
          const { header, requestId } = gcmAuthorization(key, keyId, req.externalId, req.externalKey, now());
          return { authorization: header, requestId };
        },
        decode: (body, requestId) => {
          try {
            return gcmOpenResponse(key, keyId, req.externalId, requestId ?? "", body).toString("utf8");
          } catch {
            throw new MainfluxFinalError(
              "BAD_RESPONSE",
              "the GCM answer does not authenticate (another key, or not an answer to this request)",
            );
          }
        },
      };
    }
  } catch (err) {
    if (err instanceof KeyError) throw new MainfluxFinalError("CONFIG", err.message);
    throw err;
  }
  throw new MainfluxFinalError("CONFIG", `unknown mode "${String(mode)}"`);
}

/** Upstream's JSON error body, shortened, for a message; never echoes what we sent. */
function serviceSays(body: Buffer): string {
  try {
    const parsed = parseJsonBounded(body, { maxBytes: 64 * 1024 });
    if (!parsed.ok || typeof parsed.value !== "object" || parsed.value === null) return "";
    const o = parsed.value as { message?: unknown; error?: unknown };
    const parts = [o.message, o.error].filter((s): s is string => typeof s === "string" && s.length > 0);
    return parts.length ? `: ${parts.join(": ").slice(0, 200)}` : "";
  } catch {
    return "";
  }
}

/** Maps a non-200 answer to the error a device and a flow can act on. */
export function statusError(status: number, body: Buffer, waitWhileUnknown = false): Error {
  const says = serviceSays(body);
  switch (status) {
    case 400:
      return new MainfluxFinalError("REFUSED", `the service refused the request (400)${says}`, status);
    case 401:
      return new MainfluxFinalError("MISSING_KEY", `the service got no external key (401)${says}`, status);
    case 403:
      return new MainfluxFinalError(
        "FORBIDDEN",
        `the external key or the encryption key is wrong (403)${says}`,
        status,
      );
    case 404: {
      const m = `no configuration for this external id (404)${says}`;
      return waitWhileUnknown
        ? new MainfluxError("NOT_FOUND", m, status)
        : new MainfluxFinalError("NOT_FOUND", m, status);
    }
    case 503:
      return new MainfluxError("UNAVAILABLE", `the bootstrap service is unavailable (503)${says}`, status);
  }
  if (status >= 400 && status < 500)
    return new MainfluxFinalError("REFUSED", `the service refused the request (${status})${says}`, status);
  return new MainfluxError("UNAVAILABLE", `the bootstrap service failed (${status})${says}`, status);
}

interface Got {
  status: number;
  body: Buffer;
}

function get(
  url: URL,
  headers: Record<string, string>,
  opts: { tls?: ConnectionOptions; timeoutMs: number; maxBytes: number; signal?: AbortSignal },
): Promise<Got> {
  return new Promise((resolve, reject) => {
    const https = url.protocol === "https:";
    const common = {
      method: "GET",
      headers: { ...headers, accept: "application/json" },
      signal: opts.signal,
    };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > opts.maxBytes) {
          res.destroy();
          req.destroy();
          reject(
            new MainfluxFinalError(
              "BAD_RESPONSE",
              `the answer is larger than ${opts.maxBytes} bytes; refused`,
              res.statusCode,
            ),
          );
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", (e) => reject(new MainfluxError("UNAVAILABLE", `the answer broke off: ${e.message}`)));
    };
    const req = https
      ? httpsRequest(url, { ...common, ...(opts.tls ?? {}) }, onResponse)
      : httpRequest(url, common, onResponse);
    req.setTimeout(opts.timeoutMs, () =>
      req.destroy(new MainfluxError("TIMEOUT", `no answer within ${Math.round(opts.timeoutMs / 1000)} s`)),
    );
    req.on("error", (e: Error & { code?: string }) => {
      if (e instanceof MainfluxError || e instanceof MainfluxFinalError) return reject(e);
      if (e.name === "AbortError") return reject(e);
      // A TLS verification failure will not heal by itself.
      const tls = tlsFailureOf(e);
      if (tls) return reject(new MainfluxFinalError("UNAVAILABLE", describeTlsFailure(tls, url.host)));
      reject(new MainfluxError("UNAVAILABLE", `cannot reach the bootstrap service: ${e.message}`));
    });
    req.end();
  });
}

/** One attempt: GET, check the status, decrypt, parse. Whole or nothing. */
export async function bootstrapOnce(
  req: BootstrapRequest,
  opts: BootstrapOptions = {},
  prepared: Prepared = prepare(req, opts.now),
): Promise<ProvisioningResult> {
  const { authorization, requestId } = prepared.headers();
  const got = await get(
    prepared.url,
    { authorization },
    {
      tls: opts.tls,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxBytes: opts.maxResponseBytes ?? MAX_RESPONSE_BYTES,
      signal: opts.signal,
    },
  );
  if (got.status !== 200) throw statusError(got.status, got.body, opts.waitWhileUnknown);
  const text = prepared.decode(got.body, requestId);
  let answer;
  try {
    answer = parseAnswer(text);
  } catch (err) {
    if (req.mode === "secure")
      throw new MainfluxFinalError(
        "BAD_RESPONSE",
        `${(err as Error).message} after decryption: the encryption keys of device and service differ`,
      );
    throw err;
  }
  return toResult(answer, { endpoint: prepared.endpoint, externalId: req.externalId });
}

/** Bootstraps under the retry policy; the last error is thrown as it was. */
export async function bootstrap(
  req: BootstrapRequest,
  opts: BootstrapOptions = {},
): Promise<ProvisioningResult> {
  const prepared = prepare(req, opts.now);
  let policy: RetryPolicy;
  try {
    policy = validateRetryPolicy(opts.policy);
  } catch (err) {
    throw new MainfluxFinalError("CONFIG", (err as Error).message);
  }
  return runWithRetry(
    policy,
    (n) => {
      opts.onAttempt?.(n);
      return bootstrapOnce(req, opts, prepared);
    },
    { signal: opts.signal, onRetry: opts.onRetry },
  );
}
