import { X509Certificate } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type DetailedPeerCertificate, type TLSSocket } from "node:tls";
import { szxFor } from "./blockwise";
import { DEFAULT_MAX_MESSAGE_SIZE } from "./client";
import { CoapTcpConnection } from "./connection";
import { CoapTcpError, errorText } from "./errors";
import { ServerSession, type SessionCounters, type TlsPeer } from "./server-session";
import type { CoapTcpServerOptions } from "./types";

const DEFAULT_INACTIVITY_MS = 20000;

export interface CoapTcpServerStats extends SessionCounters {
  connections: number;
}

/**
 * A CoAP-over-TCP/TLS server (RFC 8323). Each connection gets its own state; requests
 * go to `handler`. Events: "error" (Error, per-connection problems with a clear reason;
 * only emitted when someone listens), "connection" (remote), "disconnect" (remote,
 * reason). Nothing thrown in a socket event escapes.
 */
export class CoapTcpServer extends EventEmitter {
  private readonly server: Server;
  private readonly connections = new Set<CoapTcpConnection>();
  private readonly counters: SessionCounters = { blocksSent: 0, blocksReceived: 0 };
  private readonly settings: CoapTcpServerOptions & { maxMessageSize: number; szx: number };
  private listening = false;

  constructor(opts: CoapTcpServerOptions) {
    super();
    if (typeof opts?.handler !== "function") throw new TypeError("CoapTcpServer needs a handler function");
    this.settings = {
      ...opts,
      maxMessageSize: opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      szx: szxFor(opts.blockSize ?? 1024),
    };
    const inactivity = opts.inactivityTimeoutMs ?? DEFAULT_INACTIVITY_MS;
    if (opts.tls) {
      // Node would drop an unverified client without a word; we check ourselves and
      // tell the client why in an Abort (RFC 8323 §5.6) before closing.
      const refuseUnverified = opts.tls.requestCert === true && opts.tls.rejectUnauthorized !== false;
      const server = createTlsServer({
        handshakeTimeout: inactivity,
        ...opts.tls,
        rejectUnauthorized: false,
      });
      server.on("secureConnection", (socket: TLSSocket) => {
        if (refuseUnverified && !socket.authorized) this.refuse(socket);
        else this.accept(socket, tlsPeerOf(socket));
      });
      server.on("tlsClientError", (err: Error, socket: TLSSocket) => {
        // A client that hangs up mid-handshake leaves no address behind on the socket.
        const who = socket.remoteAddress ? remoteOf(socket) : "a client";
        const hint =
          (err as NodeJS.ErrnoException).code === "ECONNRESET" ? " (closed during the handshake)" : "";
        this.report(
          new CoapTcpError("COAP_TLS", `TLS handshake with ${who} failed: ${errorText(err)}${hint}`, {
            cause: err,
          }),
        );
        // With a tlsClientError listener Node leaves the socket open (a handshake timeout
        // would otherwise hold it forever).
        socket.destroy();
      });
      this.server = server;
    } else {
      this.server = createNetServer((socket) => this.accept(socket, {}));
    }
    this.server.on("error", (err) => {
      if (this.listening)
        this.report(new CoapTcpError("COAP_CONNECT", `server socket: ${errorText(err)}`, { cause: err }));
    });
  }

  get stats(): CoapTcpServerStats {
    return { connections: this.connections.size, ...this.counters };
  }

  async listen(port: number, host?: string): Promise<{ port: number }> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new CoapTcpError("COAP_CONNECT", `cannot listen on ${host ?? "*"}:${port}: ${errorText(err)}`),
        );
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    this.listening = true;
    return { port: (this.server.address() as AddressInfo).port };
  }

  /** Stops accepting, releases every connection (RFC 8323 Release), resolves when all are gone. */
  async close(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closed = once(this.server, "close").then(() => undefined);
    this.server.close();
    await Promise.all([...this.connections].map((c) => c.release("server shutting down")));
    await closed;
  }

  private accept(socket: Socket, tlsPeer: TlsPeer): void {
    try {
      socket.setNoDelay(true);
      const remote = remoteOf(socket);
      const conn = new CoapTcpConnection(socket, {
        maxMessageSize: this.settings.maxMessageSize,
        blockWise: true,
        remote,
        inactivityTimeoutMs: this.settings.inactivityTimeoutMs ?? DEFAULT_INACTIVITY_MS,
      });
      new ServerSession(conn, this.settings, tlsPeer, (err) => this.report(err), this.counters);
      this.connections.add(conn);
      conn.on("problem", (err: Error) => this.report(err));
      conn.on("close", (reason: string) => {
        this.connections.delete(conn);
        this.emit("disconnect", remote, reason);
      });
      if (!this.listening) {
        conn.destroy("server is shutting down");
        return;
      }
      this.emit("connection", remote);
      conn.start();
    } catch (err) {
      socket.destroy();
      this.report(new Error(`accepting a connection: ${errorText(err)}`, { cause: err }));
    }
  }

  private refuse(socket: TLSSocket): void {
    const remote = remoteOf(socket);
    const why = String(socket.authorizationError ?? "no client certificate");
    const cn = socket.getPeerCertificate()?.subject?.CN;
    this.report(
      new CoapTcpError(
        "COAP_TLS",
        `client certificate${cn ? ` "${cn}"` : ""} from ${remote} refused: ${why}`,
      ),
    );
    const conn = new CoapTcpConnection(socket, { maxMessageSize: 1152, blockWise: false, remote });
    conn.abort(`client certificate refused: ${why}`);
  }

  private report(err: Error): void {
    if (this.listenerCount("error") > 0) this.emit("error", err);
  }
}

function remoteOf(socket: Socket): string {
  const addr = socket.remoteAddress ?? "unknown";
  return `${addr.includes(":") ? `[${addr}]` : addr}:${socket.remotePort ?? 0}`;
}

/** The certificate chain the handshake established, leaf first. */
function tlsPeerOf(socket: TLSSocket): TlsPeer {
  const peer: TlsPeer = { authorized: socket.authorized };
  if (socket.authorizationError) peer.authorizationError = String(socket.authorizationError);
  const leaf = socket.getPeerCertificate(true);
  if (!leaf || !leaf.raw) return peer;
  peer.peerCertificate = leaf;
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let cur: DetailedPeerCertificate | undefined = leaf;
  while (cur?.raw && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    chain.push(new X509Certificate(cur.raw));
    cur = cur.issuerCertificate;
  }
  peer.peerCertificateChain = chain;
  return peer;
}
