/**
 * ThingsBoard provisioning over HTTP: POST /api/v1/provision. Every provisioning outcome,
 * FAILURE and NOT_FOUND included, is HTTP 200 with ThingsBoard's JSON; 500 only when the
 * transport itself failed. The handler fits both node:http and Express (Node-RED's
 * httpNode), reading the body itself with a size limit unless a body parser already did.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { TbProvisioningService } from "./server";
import { encodeResponse, FAILURE_RESPONSE, MAX_REQUEST_BYTES } from "./wire";

export interface HttpAnswer {
  status: number;
  body: string;
}

/** Past this many bytes the sender is cut off instead of being read to the end. */
const DISCARD_LIMIT_FACTOR = 16;

/** The answer for one request body (the transport-free core of the handler). */
export async function answerHttp(
  service: TbProvisioningService,
  body: Buffer | string,
  remote?: string,
): Promise<HttpAnswer> {
  const { response } = await service.handle(body, { transport: "http", remote });
  return { status: 200, body: encodeResponse(response) };
}

type BodyRead = { ok: true; body: Buffer } | { ok: false; tooLarge: true; cut: boolean };

/**
 * Reads a request body up to `limit` bytes. A larger body is drained without being kept
 * (so the answer can still be read by the client) and cut once it is absurdly large.
 */
export function readBody(req: IncomingMessage, limit = MAX_REQUEST_BYTES): Promise<BodyRead> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = Number.isFinite(declared) && declared > limit;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      if (!over) chunks.push(chunk);
      if (size > limit * DISCARD_LIMIT_FACTOR) {
        req.removeAllListeners("data");
        req.pause();
        resolve({ ok: false, tooLarge: true, cut: true });
      }
    });
    req.on("end", () =>
      resolve(over ? { ok: false, tooLarge: true, cut: false } : { ok: true, body: Buffer.concat(chunks) }),
    );
    req.on("error", reject);
  });
}

interface ParsedBodyRequest extends IncomingMessage {
  body?: unknown;
  _body?: boolean;
}

/** What a body parser left on the request, when one ran before us. */
function preParsedBody(req: ParsedBodyRequest): Buffer | string | undefined {
  if (req._body !== true && req.body === undefined) return undefined;
  const b = req.body;
  if (Buffer.isBuffer(b)) return b;
  if (typeof b === "string") return b;
  if (b === undefined || b === null) return undefined;
  return JSON.stringify(b);
}

function send(res: ServerResponse, status: number, body: string, close = false): void {
  if (res.headersSent) return;
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  };
  if (close) headers.connection = "close";
  res.writeHead(status, headers);
  res.end(body);
}

/** A request handler for node:http or Express; the route (POST /api/v1/provision) is the caller's. */
export function tbHttpHandler(
  service: TbProvisioningService,
  opts: { limit?: number } = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const limit = opts.limit ?? MAX_REQUEST_BYTES;
  return (req, res) => {
    const remote = req.socket.remoteAddress;
    void (async () => {
      try {
        const pre = preParsedBody(req as ParsedBodyRequest);
        let body: Buffer | string;
        if (pre !== undefined) {
          body = pre;
        } else {
          const read = await readBody(req, limit);
          if (!read.ok) {
            // Answered like any other bad request, through the service, so it is audited.
            const { response } = await service.handle(Buffer.alloc(limit + 1), { transport: "http", remote });
            send(res, 200, encodeResponse(response), true);
            if (read.cut) res.on("finish", () => req.socket.destroy());
            return;
          }
          body = read.body;
        }
        const answer = await answerHttp(service, body, remote);
        send(res, answer.status, answer.body);
      } catch {
        send(res, 500, encodeResponse(FAILURE_RESPONSE), true);
      }
    })();
  };
}
