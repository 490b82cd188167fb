/**
 * The HTTP adapter of the Mainflux bootstrap service: a request handler for node:http or
 * an Express router (Node-RED's httpNode). It reads bodies within their limits (only for
 * the management endpoints, after their token was checked), applies the per-remote rate
 * limit, and writes the service's answers.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { RateLimiter } from "../../service/rate-limit";
import { readRequestBody, sendAnswer, type BodyRefusal } from "../../transports/http-body";
import { httpPeerAddress } from "../../transports/http-peer";
import { json, type Answer, type ServiceRequest } from "./answers";
import { route, type Route } from "./routes";
import { errorJson, MAX_MANAGE_BODY_BYTES, MESSAGES as M } from "./wire";

/** What the adapter needs of the service (MainfluxBootstrapService). */
export interface HttpServed {
  readonly managementEnabled: boolean;
  /** The 401 answer when the management token is missing or wrong, else undefined. */
  checkToken(authorization: string | undefined): Answer | undefined;
  /** Answers a request, or undefined when the path is not one of this service's. */
  handle(req: ServiceRequest): Promise<Answer | undefined>;
}

function send(res: ServerResponse, a: Answer, opts: { close?: boolean; cut?: boolean } = {}): void {
  sendAnswer(res, a.status, a.headers, a.body, opts);
}

/** Why a request was refused by the HTTP adapter: fixed words, never request content. */
export type HttpRefusal = BodyRefusal | "throttled";

export interface HandlerOptions {
  /** A path prefix the endpoints live under (e.g. "/bootstrap"); "" by default. */
  basePath?: string;
  maxBodyBytes?: number;
  /**
   * Per-remote flood protection of every endpoint: a request over the rate is answered
   * 429 with Retry-After (RFC 6585 section 4) before anything else is looked at.
   */
  limiter?: RateLimiter;
  /** Retry-After of a 429 that does not carry its own, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** Called once per refused request with a fixed reason. */
  onRefused?: (reason: HttpRefusal) => void;
}

type Next = (err?: unknown) => void;

export type BootstrapHandler = ((req: IncomingMessage, res: ServerResponse, next?: Next) => void) & {
  /** True for the requests this handler serves (method, URL below the mount point). */
  claims: (method: string, url: string) => boolean;
};

/**
 * A request handler for node:http, or Express middleware (Node-RED's httpNode): paths
 * that are not this service's go to `next` (or get a 404 without one). Bodies are read
 * by lib/transports/http-body within `maxBodyBytes`, and only for the management
 * endpoints, after their token was checked.
 */
export function bootstrapHandler(service: HttpServed, opts: HandlerOptions = {}): BootstrapHandler {
  const base = (opts.basePath ?? "").replace(/\/+$/, "");
  const limit = opts.maxBodyBytes ?? MAX_MANAGE_BODY_BYTES;
  const retryAfter = String(Math.max(1, Math.ceil(opts.retryAfterSeconds ?? 1)));
  const pathOf = (url: string): string | undefined => {
    if (base && !(url === base || url.startsWith(base + "/") || url.startsWith(base + "?"))) return undefined;
    return url.slice(base.length) || "/";
  };
  const ours = (url: string): Route | undefined => {
    const path = pathOf(url);
    if (path === undefined) return undefined;
    const r = route(path);
    if (r.kind === "none" || (r.kind !== "bootstrap" && !service.managementEnabled)) return undefined;
    return r;
  };
  const throttled = (): Answer =>
    json(429, errorJson(M.validation, "too many requests from this address"), { "retry-after": retryAfter });
  const handler = (req: IncomingMessage, res: ServerResponse, next?: Next) => {
    const url = req.url ?? "/";
    const pass = () => (next ? next() : send(res, json(404, errorJson("not found"))));
    const r = ours(url);
    if (!r) return pass();
    const path = pathOf(url) as string;
    const remote = httpPeerAddress(req);
    if (opts.limiter && !opts.limiter.take(remote)) {
      opts.onRefused?.("throttled");
      return send(res, throttled(), { close: true });
    }
    void (async () => {
      try {
        let body: Buffer | undefined;
        const method = (req.method ?? "GET").toUpperCase();
        if (r.kind !== "bootstrap" && (method === "POST" || method === "PUT")) {
          // The token is checked before a body is read from anyone.
          const denied = service.checkToken(header(req, "authorization"));
          if (denied) return send(res, denied, { close: true });
          const read = await readRequestBody(req, { maxBytes: limit });
          if (!read.ok) {
            opts.onRefused?.(read.reason);
            if (read.reason === "aborted") return void req.socket.destroy();
            const answer =
              read.reason === "encoding"
                ? json(415, errorJson(M.contentType, "only identity content coding is accepted"))
                : read.reason === "unreadable"
                  ? json(400, errorJson(M.validation, M.malformed))
                  : json(413, errorJson(M.validation, `request body larger than ${limit} bytes`));
            return send(res, answer, { close: true, cut: read.cut });
          }
          body = read.body;
        }
        const answer = await service.handle({
          method,
          path,
          authorization: header(req, "authorization"),
          contentType: header(req, "content-type"),
          body,
          remote,
        });
        if (!answer) return pass();
        if (answer.status === 429) {
          opts.onRefused?.("throttled");
          if (!Object.keys(answer.headers).some((h) => h.toLowerCase() === "retry-after"))
            answer.headers["retry-after"] = retryAfter;
        }
        send(res, answer);
      } catch {
        send(res, json(500, errorJson("internal error")), { close: true });
      }
    })();
  };
  return Object.assign(handler, { claims: (_method: string, url: string) => ours(url) !== undefined });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
