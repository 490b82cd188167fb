/**
 * Azure DPS over HTTPS, on a node:https server of its own ("Device Registration REST
 * API"; Azure/azure-iot-sdk-node provisioning/transport/http/src/http.ts): PUT
 * .../register, GET .../operations/{operationId} and the Device Registration Status Lookup
 * POST /{idScope}/registrations/{registrationId}. Every request carries its proof: the SAS
 * token in `Authorization`, or the client certificate of the TLS connection (asked for,
 * never required by TLS itself: the chain is checked against the enrollments here).
 * Answers are JSON, 202 with a `Retry-After` header while an operation runs; errors carry
 * Azure's error body. Bodies are bounded, silent connections cut.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket, TlsOptions } from "node:tls";
import { readRequestBody, sendAnswer } from "../../transports/http-body";
import { httpPeerAddress } from "../../transports/http-peer";
import { serverTlsOptions } from "../../transports/tls-policy";
import { acceptProxyProtocol } from "../../transports/proxy-listener";
import { MAX_REQUEST_BYTES, type AzureDpsService, type DpsAnswer, type DpsCaller } from "./server";
import { clientCertificateTls, peerChain } from "./server-x509";
import { DPS_ERRORS, errorBody, parseHttpRequest } from "./wire";
import { acceptQueueFor } from "../../transports/accept-queue";

export interface AzureHttpsOptions {
  host: string;
  /** 0 picks a free port (Azure: 443). */
  port: number;
  tls: TlsOptions;
  /** Time for a whole request (headers and body), ms (default 10 s). */
  requestTimeoutMs?: number;
  /** Most connections at once (default 1000). */
  maxConnections?: number;
  /**
   * Every connection begins with a PROXY protocol header, read before the TLS handshake
   * (lib/transports/proxy-listener.ts): the requests' remote is the client's address.
   */
  proxyProtocol?: boolean;
  /** Told of requests refused before the core saw them (no peer bytes). */
  onViolation?: (what: string, remote: string | undefined) => void;
}

export interface AzureHttpsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, a: DpsAnswer, cut = false): void {
  const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
  if (a.retryAfterS !== undefined) headers["retry-after"] = String(a.retryAfterS);
  sendAnswer(res, a.status, headers, JSON.stringify(a.body), { cut });
}

function plainError(
  res: ServerResponse,
  err: { status: number; errorCode: number; message: string },
  cut = false,
): void {
  send(res, { status: err.status, body: errorBody(err, "-") }, cut);
}

export async function startAzureHttpsServer(
  service: AzureDpsService,
  opts: AzureHttpsOptions,
): Promise<AzureHttpsServer> {
  const sockets = new Set<Socket>();
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const remote = httpPeerAddress(req);
    const parsed = parseHttpRequest(req.method ?? "", req.url ?? "");
    if (!parsed) {
      opts.onViolation?.("https: not a DPS request", remote);
      return plainError(res, DPS_ERRORS.notFound, true);
    }
    const read = await readRequestBody(req, { maxBytes: MAX_REQUEST_BYTES });
    if (!read.ok) {
      service.refusedEarly(
        "https",
        remote,
        "invalid",
        read.reason === "too-large" ? "the request is too large" : `the body is ${read.reason}`,
      );
      return plainError(
        res,
        read.reason === "too-large" ? DPS_ERRORS.tooLarge : DPS_ERRORS.badRequest,
        read.cut,
      );
    }
    const chain = peerChain(req.socket as TLSSocket);
    const caller: DpsCaller = {
      transport: "https",
      remote,
      idScope: parsed.idScope,
      registrationId: parsed.registrationId,
      token: req.headers.authorization,
      chain,
    };
    const who = await service.attest(caller);
    if (!who.ok) return send(res, who.answer);
    if (parsed.kind === "register") return send(res, await service.register(who.who, caller, read.body));
    if (parsed.kind === "status") return send(res, await service.status(who.who, parsed.operationId));
    return send(res, await service.lookup(who.who));
  };
  const server: Server = createServer(
    serverTlsOptions({
      // The client certificate is asked for and checked here, against the enrollments.
      ...clientCertificateTls(opts.tls),
      handshakeTimeout: opts.requestTimeoutMs ?? 10000,
    }),
    (req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) plainError(res, DPS_ERRORS.internal);
      });
    },
  );
  server.requestTimeout = opts.requestTimeoutMs ?? 10000;
  server.headersTimeout = Math.min(server.requestTimeout, 10000);
  server.keepAliveTimeout = 5000;
  // A connection silent after its handshake (no request, or one left half-sent) is closed.
  server.timeout = 2 * (opts.requestTimeoutMs ?? 10000);
  server.maxHeadersCount = 50;
  server.maxConnections = opts.maxConnections ?? 1000;
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.on("tlsClientError", (_err, s) => s.destroy());
  server.on("clientError", (_err, s) => s.destroy());
  const gate = opts.proxyProtocol
    ? acceptProxyProtocol(server, {}, (why, remote) => opts.onViolation?.(`https: ${why}`, remote))
    : undefined;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // The kernel may queue as many connections as the server takes (a fleet all at once).
    server.listen(
      { port: opts.port, host: opts.host, backlog: acceptQueueFor(server.maxConnections) },
      () => {
        server.off("error", reject);
        resolve();
      },
    );
  });
  server.on("error", () => undefined);
  let closing: Promise<void> | undefined;
  return {
    host: opts.host,
    port: (server.address() as AddressInfo).port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        for (const s of sockets) s.destroy();
        gate?.destroyPending();
      })),
  };
}
