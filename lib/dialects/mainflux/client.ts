/**
 * The device side of Mainflux bootstrap (Mainflux's bootstrap service, bootstrap/api in
 * mainflux/mainflux): one GET for the configuration, plain or in one of the secure modes.
 * Status codes become ProvisioningErrors of the shared vocabulary (lib/model/errors.ts);
 * a 4xx is final, and a 404 is retried only where the caller chose to keep waiting (a
 * device may ask before its configuration was uploaded: device-dialect.ts).
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { ConnectionOptions } from "node:tls";
import type { ProvisioningResult } from "../../model/result";
import { finalError, transientError, ProvisioningError } from "../../model/errors";
import type { RetryPolicy } from "../../retry/policy";
import { AbortedError, parseRetryAfter, type RetryHooks } from "../../retry/run";
import { classifyNetworkFailure } from "../../transports/network-failure";
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
export interface Prepared {
  /** The most to read of an answer (MAX_RESPONSE_BYTES unless set). */
  maxResponseBytes?: number;
  externalId: string;
  mode: BootstrapMode;
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
    throw finalError("CONFIG", "the bootstrap URL is not a URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw finalError("CONFIG", "the bootstrap URL must start with http:// or https://");
  return u;
}

/** Checks everything that can be checked without the network (throws CONFIG errors). */
export function prepare(req: BootstrapRequest, now: () => number = Date.now): Prepared {
  const base = normaliseBase(req.url);
  if (!req.externalId) throw finalError("CONFIG", "an external id is required");
  if (!req.externalKey) throw finalError("CONFIG", "an external key is required");
  const mode = req.mode ?? "plain";
  const path = (mode === "plain" ? BOOTSTRAP_PATH : SECURE_PATH) + encodeURIComponent(req.externalId);
  const url = new URL(base.pathname.replace(/\/+$/, "") + path, base);
  const endpoint = url.toString();
  const common = { externalId: req.externalId, mode, url, endpoint };
  try {
    if (mode === "plain") {
      return {
        ...common,
        headers: () => ({ authorization: THING_PREFIX + req.externalKey }),
        decode: (body) => body.toString("utf8"),
      };
    }
    if (mode === "secure") {
      const key = cfbKey(req.encryptionKey ?? "");
      return {
        ...common,
        headers: () => ({ authorization: cfbAuthorization(key, req.externalKey) }),
        decode: (body) => {
          try {
            return cfbDecrypt(key, body).toString("utf8");
          } catch {
            throw finalError("INVALID_ANSWER", "the secure answer is shorter than its IV");
          }
        },
      };
    }
    if (mode === "gcm") {
      const key = gcmKey(req.encryptionKey ?? "");
      const keyId = checkKeyId(req.keyId ?? "");
      return {
        ...common,
        headers: () => {
          const { header, requestId } = gcmAuthorization(key, keyId, req.externalId, req.externalKey, now());
          return { authorization: header, requestId };
        },
        decode: (body, requestId) => {
          try {
            return gcmOpenResponse(key, keyId, req.externalId, requestId ?? "", body).toString("utf8");
          } catch {
            throw finalError(
              "INVALID_ANSWER",
              "the GCM answer does not authenticate (another key, or not an answer to this request)",
            );
          }
        },
      };
    }
  } catch (err) {
    if (err instanceof KeyError) throw finalError("CONFIG", err.message);
    throw err;
  }
  throw finalError("CONFIG", `unknown mode "${String(mode)}"`);
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

/**
 * Maps a non-200 answer to the shared vocabulary; `status` keeps the HTTP status. 401 (no
 * key) and 403 (a wrong external or encryption key) are DENIED, 404 NOT_FOUND (final: the
 * dialect retries it only when told to wait while unknown), 429 and a 503 with
 * Retry-After are BUSY (RFC 6585 section 4, RFC 9110 section 10.2.3), other 5xx
 * UNAVAILABLE, other 4xx REFUSED.
 */
export function statusError(status: number, body: Buffer, retryAfter?: string | string[]): ProvisioningError {
  const says = serviceSays(body);
  const retryAfterMs = parseRetryAfter(retryAfter);
  switch (status) {
    case 401:
      return finalError("DENIED", `the service got no external key (401)${says}`, { status });
    case 403:
      return finalError("DENIED", `the external key or the encryption key is wrong (403)${says}`, { status });
    case 404:
      return finalError("NOT_FOUND", `no configuration for this external id (404)${says}`, { status });
    case 429:
      return transientError("BUSY", `the bootstrap service is throttling (429)${says}`, {
        status,
        retryAfterMs,
      });
    case 503:
      return retryAfterMs === undefined
        ? transientError("UNAVAILABLE", `the bootstrap service is unavailable (503)${says}`, { status })
        : transientError("BUSY", `the bootstrap service is busy (503)${says}`, { status, retryAfterMs });
  }
  if (status >= 400 && status < 500)
    return finalError("REFUSED", `the service refused the request (${status})${says}`, { status });
  if (status >= 500)
    return transientError("UNAVAILABLE", `the bootstrap service failed (${status})${says}`, { status });
  return finalError("INVALID_ANSWER", `the bootstrap service answered ${status}${says}`, { status });
}

interface Got {
  status: number;
  body: Buffer;
  retryAfter?: string | string[];
}

function get(
  url: URL,
  headers: Record<string, string>,
  opts: { tls?: ConnectionOptions; timeoutMs: number; maxBytes: number; signal?: AbortSignal },
): Promise<Got> {
  return new Promise((resolve, reject) => {
    const https = url.protocol === "https:";
    const where = `the bootstrap service at ${url.host}`;
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
          reject(finalError("TOO_LARGE", `the answer is larger than ${opts.maxBytes} bytes; refused`));
          return;
        }
        chunks.push(c);
      });
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          retryAfter: res.headers["retry-after"],
        }),
      );
      res.on("error", (e) => reject(classifyNetworkFailure(e, where)));
    };
    const req = https
      ? httpsRequest(url, { ...common, ...(opts.tls ?? {}) }, onResponse)
      : httpRequest(url, common, onResponse);
    req.setTimeout(opts.timeoutMs, () =>
      req.destroy(
        transientError("TIMEOUT", `no answer from ${where} within ${Math.round(opts.timeoutMs / 1000)} s`),
      ),
    );
    req.on("error", (e: Error & { code?: string }) => {
      if (e instanceof ProvisioningError) return reject(e);
      // node:http rejects an aborted request with an AbortError: this side stopped.
      if (e.name === "AbortError" || opts.signal?.aborted) return reject(new AbortedError());
      reject(classifyNetworkFailure(e, where));
    });
    req.end();
  });
}

/** One attempt: GET, check the status, decrypt, parse. Whole or nothing. */
export async function attemptPrepared(
  prepared: Prepared,
  opts: { tls?: ConnectionOptions; timeoutMs?: number; maxResponseBytes?: number; signal?: AbortSignal },
): Promise<ProvisioningResult> {
  const { authorization, requestId } = prepared.headers();
  const got = await get(
    prepared.url,
    { authorization },
    {
      tls: opts.tls,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxBytes: opts.maxResponseBytes ?? prepared.maxResponseBytes ?? MAX_RESPONSE_BYTES,
      signal: opts.signal,
    },
  );
  if (got.status !== 200) throw statusError(got.status, got.body, got.retryAfter);
  const text = prepared.decode(got.body, requestId);
  let answer;
  try {
    answer = parseAnswer(text);
  } catch (err) {
    if (prepared.mode === "secure")
      throw finalError(
        "INVALID_ANSWER",
        `${(err as Error).message} after decryption: the encryption keys of device and service differ`,
      );
    throw err;
  }
  return toResult(answer, { endpoint: prepared.endpoint, externalId: prepared.externalId });
}

/** One attempt for a request (prepared here unless given). */
export function bootstrapOnce(
  req: BootstrapRequest,
  opts: BootstrapOptions = {},
  prepared: Prepared = prepare(req, opts.now),
): Promise<ProvisioningResult> {
  return attemptPrepared(prepared, opts);
}
