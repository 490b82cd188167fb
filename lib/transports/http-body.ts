/**
 * One reader for the request bodies our HTTP endpoints (ThingsBoard's POST
 * /api/v1/provision, Mainflux's management endpoints) take from unauthenticated peers:
 * at most `maxBytes` are kept, nothing is inflated, and a sender far past the limit is cut.
 *
 * - Content-Encoding other than identity is refused unread: RFC 9110 section 8.4 lets a
 *   server answer 415 to a coding it does not accept, and inflating a gzip bomb is exactly
 *   the work a limit on the wire must not allow (body-parser's `inflate` does it).
 * - A declared Content-Length over the limit is refused before a byte is read; a chunked
 *   body over the limit is drained without being kept (so the client can still read the
 *   answer), and cut once it is `drainFactor` times the limit.
 * - When a body parser ran before us anyway (one not stopped by `claimRequest`), what it
 *   left is used, re-serialized within a try: JSON.stringify throws RangeError on deep
 *   nesting, which must not become a 500.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

export interface BodyLimits {
  /** Largest body kept, in bytes. */
  maxBytes: number;
  /** Past maxBytes * drainFactor the sender is cut instead of read to the end (default 16). */
  drainFactor?: number;
}

/** Why a body was not read; never the bytes themselves. */
export type BodyRefusal = "too-large" | "encoding" | "unreadable" | "aborted";

export type BodyRead = { ok: true; body: Buffer } | { ok: false; reason: BodyRefusal; cut: boolean };

const DEFAULT_DRAIN_FACTOR = 16;

/** Requests whose body no parser may read: see `claimRequest`. */
const claimed = new WeakSet<IncomingMessage>();

interface ParsedBodyRequest extends IncomingMessage {
  body?: unknown;
  _body?: boolean;
}

/**
 * Keeps every body parser away from `req`: body-parser (json, urlencoded, raw, text; the
 * parsers Node-RED's admin app and the core http-in node use) skips a request whose
 * `_body` is true ("body already parsed", body-parser 1.x lib/types/*.js), leaving the
 * stream unread for `readRequestBody`.
 */
export function claimRequest(req: IncomingMessage): void {
  claimed.add(req);
  (req as ParsedBodyRequest)._body = true;
}

/** True when a Content-Encoding other than identity is declared (RFC 9110 section 8.4). */
export function encodedBody(req: IncomingMessage): boolean {
  const v = req.headers["content-encoding"];
  if (v === undefined) return false;
  return String(v)
    .split(",")
    .some((c) => {
      const t = c.trim().toLowerCase();
      return t !== "" && t !== "identity";
    });
}

/** What a body parser that ran before us left on the request, if one did. */
function parsedBefore(req: ParsedBodyRequest, limits: BodyLimits): BodyRead | undefined {
  if (claimed.has(req) || req._body !== true) return undefined;
  const b = req.body;
  let body: Buffer;
  if (Buffer.isBuffer(b)) body = b;
  else if (typeof b === "string") body = Buffer.from(b, "utf8");
  else if (b === undefined || b === null) body = Buffer.alloc(0);
  else {
    try {
      body = Buffer.from(JSON.stringify(b), "utf8");
    } catch {
      return { ok: false, reason: "unreadable", cut: false };
    }
  }
  return body.length > limits.maxBytes ? { ok: false, reason: "too-large", cut: false } : { ok: true, body };
}

/** Reads the body of `req` within `limits`. Never rejects. */
export function readRequestBody(req: IncomingMessage, limits: BodyLimits): Promise<BodyRead> {
  const before = parsedBefore(req, limits);
  if (before) return Promise.resolve(before);
  const limit = limits.maxBytes;
  const cutAt = limit * (limits.drainFactor ?? DEFAULT_DRAIN_FACTOR);
  if (encodedBody(req)) return Promise.resolve({ ok: false, reason: "encoding", cut: true });
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > cutAt)
    return Promise.resolve({ ok: false, reason: "too-large", cut: true });
  if (req.readableEnded) return Promise.resolve({ ok: true, body: Buffer.alloc(0) });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = Number.isFinite(declared) && declared > limit;
    const finish = (r: BodyRead) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      if (!over) chunks.push(chunk);
      else chunks.length = 0;
      if (size > cutAt) {
        req.pause();
        finish({ ok: false, reason: "too-large", cut: true });
      }
    };
    const onEnd = () =>
      finish(
        over ? { ok: false, reason: "too-large", cut: false } : { ok: true, body: Buffer.concat(chunks) },
      );
    const onError = () => finish({ ok: false, reason: "aborted", cut: true });
    // A peer that goes away mid-body closes the request without "end" (or "error").
    const onClose = onError;
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/**
 * How long a cut sender is still read (and the bytes thrown away) after its answer went
 * out: closing a socket with unread data makes the kernel send RST, and a client still
 * writing its body then loses the answer it has not read yet. This is the "lingering
 * close" of RFC 9112 section 9.6; the wait is bounded so that a slow sender cannot hold it.
 */
const LINGER_MS = 2000;

/**
 * Sends one answer: the body's length is declared, nothing is cached; `close` asks the
 * client to open a new connection. `cut` is for a body left unread: the whole answer is
 * written at once, but the response only ends once the client's body has ended (thrown
 * away, never kept) and the connection then closes, or LINGER_MS have passed and the
 * socket is destroyed. Ending it
 * at once would let Node's server destroy the socket while the client still writes
 * (destroySoon in lib/_http_server.js, for a client that sent "Connection: close").
 */
export function sendAnswer(
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: Buffer | string,
  opts: { close?: boolean; cut?: boolean } = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const req = res.req as IncomingMessage | undefined;
  const out: Record<string, string | number> = {
    ...headers,
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  };
  if (opts.close || opts.cut) out.connection = "close";
  res.writeHead(status, out);
  if (!opts.cut || !req || req.complete) {
    res.end(body);
    return;
  }
  res.write(body);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    res.end();
  };
  const timer = setTimeout(() => {
    end();
    req.socket.destroy();
  }, LINGER_MS);
  timer.unref?.();
  req.once("end", end);
  req.once("close", end);
  req.resume();
}
