/**
 * ThingsBoard provisioning over CoAP (UDP): POST /api/v1/provision. SUCCESS is 2.01
 * Created; every other status is 4.00 Bad Request with the same JSON; an undecodable
 * payload is a FAILURE, so 4.00 as well.
 */

import type { Socket } from "node:dgram";
import type { IncomingMessage, OutgoingMessage, Server } from "coap";
import { coapLib } from "../../util/protocol-libs";
import { UNAVAILABLE_RETRY_S, type TbProvisioningService } from "./server";
import { COAP_PATH, encodeResponse, MAX_REQUEST_BYTES } from "./wire";

/** node-coap's default response cache grows without a bound that helps: 2 MiB of answers is plenty. */
export const COAP_CACHE_BYTES = 2 * 1024 * 1024;

export interface TbCoapServerOptions {
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** "udp6" to serve IPv6. */
  type?: "udp4" | "udp6";
}

export interface TbCoapServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

function pathOf(url: string): string {
  const q = url.indexOf("?");
  return (q < 0 ? url : url.slice(0, q)).replace(/^\/+|\/+$/g, "");
}

/** A Block1 option's block number, more flag and block size (RFC 7959 section 2.2: NUM, M, SZX). */
function block1Of(value: Buffer): { end: number; more: boolean; size: number } {
  let v = 0;
  for (const b of value) v = v * 256 + b;
  const size = 2 ** ((v & 0x07) + 4);
  return { end: (Math.floor(v / 16) + 1) * size, more: (v & 0x08) !== 0, size };
}

/**
 * Block1 uploads under way at once from one peer address, and from all peers together:
 * node-coap keeps each one until its last block or for EXCHANGE_LIFETIME (RFC 7252 section
 * 4.8.2, 247 s), so without a cap a peer (or a spoofed source, over UDP) could start
 * uploads under fresh ports and Request-Tags until memory ran out. A device sends one.
 */
export const MAX_BLOCK1_UPLOADS_PER_ADDRESS = 4;
export const MAX_BLOCK1_UPLOADS = 64;

/**
 * node-coap 1.5 collects the blocks of a Block1 upload (RFC 7959 section 2.5) under the
 * request's token (server.js, _toCacheKey), but a client may use a new token for each
 * block, as libcoap does (RFC 7959 section 2.4: tokens are independent of the transfer;
 * RFC 9175 gives Request-Tag for telling concurrent transfers apart). Then no upload of
 * more than one block ever assembles, and the last block is answered 5.00. Blocks are
 * collected per peer endpoint, request path and Request-Tag instead, which is what the
 * RFCs use to match a transfer's blocks; and what node-coap would keep is bounded here,
 * before it keeps it (it answers an error thrown here with 5.00, the message as diagnostic).
 */
function reassembleBlock1ByEndpoint(server: Server): void {
  type Packet = {
    options?: Array<{ name: string | number; value: Buffer }>;
    token?: Buffer;
    payload?: Buffer;
  };
  type Request = { url?: string; rsinfo?: { address: string; port: number } };
  const s = server as unknown as {
    _toCacheKey?: (request: Request, packet: Packet) => string | null;
    _block1Cache?: { _cache?: Map<string, unknown> };
  };
  const byToken = s._toCacheKey;
  if (typeof byToken !== "function") return;
  s._toCacheKey = function (this: unknown, request, packet) {
    const options = packet.options ?? [];
    const option = options.find((o) => o.name === "Block1" || o.name === 27)?.value;
    if (!option) return byToken.call(this, request, packet);
    const block = block1Of(option);
    // A transfer's blocks are kept until its last one: one beyond the request limit, or a
    // block carrying more than its own size (each is kept whole, under its offset), is
    // refused before it is kept.
    if (block.end > MAX_REQUEST_BYTES)
      throw new Error(`the request is larger than ${MAX_REQUEST_BYTES} bytes`);
    if ((packet.payload?.length ?? 0) > block.size) throw new Error("a block is larger than its Block1 size");
    // Request-Tag is option 292 (RFC 9175 section 3.2); node-coap does not name it.
    const tag = options.find((o) => o.name === 292 || o.name === "292")?.value.toString("hex") ?? "";
    const address = request.rsinfo?.address ?? "";
    const mine = `block1/${address}/`;
    const key = `${mine}${request.rsinfo?.port ?? ""}/${pathOf(request.url ?? "")}/${tag}`;
    const uploads = s._block1Cache?._cache;
    if (block.more && uploads && !uploads.has(key)) {
      if (uploads.size >= MAX_BLOCK1_UPLOADS) throw new Error("too many uploads under way, try later");
      let fromAddress = 0;
      for (const k of uploads.keys()) if (k.startsWith(mine)) fromAddress++;
      if (fromAddress >= MAX_BLOCK1_UPLOADS_PER_ADDRESS)
        throw new Error("too many uploads under way from this address, try later");
    }
    return key;
  };
}

export async function startTbCoapServer(
  service: TbProvisioningService,
  opts: TbCoapServerOptions,
): Promise<TbCoapServer> {
  const host = opts.host ?? "127.0.0.1";
  // Answers still being worked out. node-coap (coap 1.5, dist/lib/outgoing_message.js)
  // arms a timer per confirmable request that sends an empty ACK on the socket; after
  // close() that send throws ERR_SOCKET_DGRAM_NOT_RUNNING out of the timer, which ends
  // the process (a redeploy while a request waits for the flow). Close disarms them, and
  // an answer that comes after close is not sent.
  const open = new Set<OutgoingMessage>();
  let closed = false;
  const server: Server = coapLib().createServer({
    type: opts.type ?? (host.includes(":") ? "udp6" : "udp4"),
    cacheSize: COAP_CACHE_BYTES,
  });
  server.on("request", (req: IncomingMessage, res: OutgoingMessage) => {
    // An answer slower than node-coap's piggyback window goes out as a separate confirmable
    // response; a peer that never acknowledges it makes node-coap emit "error" on the
    // response after EXCHANGE_LIFETIME (RFC 7252 section 4.8.2, 247 s), which with no
    // listener ended the whole process. Nothing is left to do for such a peer.
    res.on("error", () => undefined);
    if (pathOf(req.url) !== COAP_PATH) {
      res.code = "4.04";
      res.end();
      return;
    }
    if (req.method !== "POST") {
      res.code = "4.05";
      res.end();
      return;
    }
    open.add(res);
    void service
      .handle(req.payload ?? Buffer.alloc(0), { transport: "coap", remote: req.rsinfo.address })
      .finally(() => open.delete(res))
      .then(
        ({ response, unavailable }) => {
          if (closed) return;
          if (unavailable) {
            // RFC 7252 5.9.3.4: 5.03 Service Unavailable, Max-Age the seconds to wait.
            res.code = "5.03";
            res.setOption("Max-Age", UNAVAILABLE_RETRY_S);
            res.end();
            return;
          }
          res.code = response.status === "SUCCESS" ? "2.01" : "4.00";
          res.setOption("Content-Format", "application/json");
          res.end(encodeResponse(response));
        },
        () => {
          if (closed) return;
          res.code = "5.00";
          res.end();
        },
      );
  });
  reassembleBlock1ByEndpoint(server);
  server.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, (err?: Error) => {
      server.off("error", reject);
      if (err) reject(err);
      else resolve();
    });
  });
  const sock = (server as unknown as { _sock: Socket | null })._sock;
  const port = sock ? sock.address().port : opts.port;
  return {
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        for (const res of open) clearTimeout((res as unknown as { _ackTimer?: NodeJS.Timeout })._ackTimer);
        open.clear();
        // node-coap also arms timers for answers it makes itself (a Block1 continue, its
        // own 5.00 for a request it could not assemble: server.js, outgoing_message.js,
        // retry_send.js) and they send on the socket after close, where dgram throws out
        // of the timer. The socket is this server's own: past close, a send is a no-op.
        if (sock) sock.send = (() => undefined) as unknown as Socket["send"];
        server.close(() => resolve());
      }),
  };
}
