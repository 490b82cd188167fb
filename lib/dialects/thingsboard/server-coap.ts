/**
 * ThingsBoard provisioning over CoAP (UDP): POST /api/v1/provision. SUCCESS is 2.01
 * Created; every other status is 4.00 Bad Request with the same JSON; an undecodable
 * payload is a FAILURE, so 4.00 as well.
 */

import { createServer, type IncomingMessage, type OutgoingMessage, type Server } from "coap";
import type { TbProvisioningService } from "./server";
import { COAP_PATH, encodeResponse } from "./wire";

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
  const server: Server = createServer({
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
        ({ response }) => {
          if (closed) return;
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
  server.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, (err?: Error) => {
      server.off("error", reject);
      if (err) reject(err);
      else resolve();
    });
  });
  const sock = (server as unknown as { _sock: { address(): { port: number } } | null })._sock;
  const port = sock ? sock.address().port : opts.port;
  return {
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        for (const res of open) clearTimeout((res as unknown as { _ackTimer?: NodeJS.Timeout })._ackTimer);
        open.clear();
        server.close(() => resolve());
      }),
  };
}
