/**
 * ThingsBoard provisioning over HTTP: POST /api/v1/provision. Every provisioning outcome,
 * FAILURE and NOT_FOUND included, is HTTP 200 with ThingsBoard's JSON; a request refused
 * by the rate limiter is 429 with Retry-After (RFC 6585 section 4, as ThingsBoard's HTTP
 * transport answers when its rate limits are hit); 500 only when the transport itself
 * failed. The handler fits both node:http and Express (Node-RED's httpNode) and reads the
 * body itself (lib/transports/http-body): at most 64 KiB, nothing inflated, whatever the
 * Content-Type (ThingsBoard's own endpoint reads the body as JSON regardless).
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import { readRequestBody, sendAnswer, type BodyRefusal } from "../../transports/http-body";
import { httpPeerAddress } from "../../transports/http-peer";
import { UNAVAILABLE_RETRY_S, type TbProvisioningService } from "./server";
import { encodeResponse, FAILURE_RESPONSE, MAX_REQUEST_BYTES } from "./wire";

export interface HttpAnswer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** Why a request was refused before the service saw it, or "throttled" after. */
export type HttpRefusal = BodyRefusal | "throttled";

export interface TbHttpOptions {
  /** Largest body read (default 64 KiB). */
  limit?: number;
  /** Retry-After of a throttled request, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** Called once per refused request with a fixed reason (never request content). */
  onRefused?: (reason: HttpRefusal) => void;
}

const JSON_HEADERS = { "content-type": "application/json" };

/** The answer for one request body (the transport-free core of the handler). */
export async function answerHttp(
  service: TbProvisioningService,
  body: Buffer | string,
  remote?: string,
  retryAfterSeconds = 1,
): Promise<HttpAnswer> {
  const { response, audit, retryAfterMs, unavailable } = await service.handle(body, {
    transport: "http",
    remote,
  });
  // RFC 9110 15.6.4: 503 is "try again later"; ThingsBoard's own HTTP clients and ours retry it.
  if (unavailable)
    return {
      status: 503,
      body: encodeResponse(response),
      headers: { "retry-after": String(UNAVAILABLE_RETRY_S) },
    };
  // Over the rate, or slowed and locked after failed attempts: the failure guard knows
  // when its lock ends; the rate limiter's token comes back after 1/rate seconds.
  if (audit.reason === "throttled" || audit.reason === "locked") {
    const seconds = retryAfterMs !== undefined ? retryAfterMs / 1000 : retryAfterSeconds;
    return {
      status: 429,
      body: encodeResponse(response),
      headers: { "retry-after": String(Math.max(1, Math.ceil(seconds))) },
    };
  }
  return { status: 200, body: encodeResponse(response) };
}

/** A request handler for node:http or Express; the route (POST /api/v1/provision) is the caller's. */
export function tbHttpHandler(
  service: TbProvisioningService,
  opts: TbHttpOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const limit = opts.limit ?? MAX_REQUEST_BYTES;
  return (req, res) => {
    const remote = httpPeerAddress(req);
    void (async () => {
      try {
        const read = await readRequestBody(req, { maxBytes: limit });
        if (!read.ok) {
          opts.onRefused?.(read.reason);
          if (read.reason === "aborted") return void req.socket.destroy();
          // Answered like any other bad request, through the service, so it is audited
          // (and counted by the rate limiter); the body stays unread.
          const bad = Buffer.alloc(limit + 1);
          const answer = await answerHttp(service, bad, remote, opts.retryAfterSeconds);
          return sendAnswer(res, answer.status, { ...JSON_HEADERS, ...answer.headers }, answer.body, {
            close: true,
            cut: read.cut,
          });
        }
        const answer = await answerHttp(service, read.body, remote, opts.retryAfterSeconds);
        if (answer.status === 429) opts.onRefused?.("throttled");
        sendAnswer(res, answer.status, { ...JSON_HEADERS, ...answer.headers }, answer.body);
      } catch {
        sendAnswer(res, 500, JSON_HEADERS, encodeResponse(FAILURE_RESPONSE), { close: true });
      }
    })();
  };
}
