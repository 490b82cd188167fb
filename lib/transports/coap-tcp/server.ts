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
import { serverTlsOptions } from "../tls-policy";
import { acceptProxyProtocol, proxyProtocolOptions, type ProxyProtocolGate } from "../proxy-listener";
import { acceptQueueFor } from "../accept-queue";

const DEFAULT_INACTIVITY_MS = 20000;
/** A message that has begun must be complete within this long (slow-frame peers). */
export const DEFAULT_FRAME_TIMEOUT_MS = 10000;
/** Connections held at once, TLS handshakes included. */
export const DEFAULT_MAX_CONNECTIONS = 1000;
/** Of those, from one remote address: no address (or few) may take every slot. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 50;
/** Refused connections are reported summarised, at most once in this long. */
const REFUSAL_REPORT_MS = 10000;

export interface CoapTcpServerStats extends SessionCounters {
  connections: number;
  /** Connections closed at once because a connection limit was reached. */
  refused: number;
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
  private readonly maxConnections: number;
  private readonly maxPerAddress: number;
  /** TCP connections held (handshaking or established), in total and per remote address. */
  private held = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly refusedSockets = new WeakSet<Socket>();
  /** Every admitted TCP socket, so close() can also end those still in the TLS handshake. */
  private readonly sockets = new Set<Socket>();
  private refusedTotal = 0;
  private refusedSinceReport = 0;
  private lastRefusalReport = 0;
  private readonly proxyGate: ProxyProtocolGate | undefined;

  constructor(opts: CoapTcpServerOptions) {
    super();
    if (typeof opts?.handler !== "function") throw new TypeError("CoapTcpServer needs a handler function");
    this.settings = {
      ...opts,
      maxMessageSize: opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      szx: szxFor(opts.blockSize ?? 1024),
    };
    const inactivity = opts.inactivityTimeoutMs ?? DEFAULT_INACTIVITY_MS;
    this.maxConnections = positiveInt(opts.maxConnections, DEFAULT_MAX_CONNECTIONS, "maxConnections");
    this.maxPerAddress = positiveInt(
      opts.maxConnectionsPerAddress,
      DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
      "maxConnectionsPerAddress",
    );
    positiveInt(opts.frameTimeoutMs, DEFAULT_FRAME_TIMEOUT_MS, "frameTimeoutMs");
    if (opts.tls) {
      // Node would drop an unverified client without a word; we check ourselves and
      // tell the client why in an Abort (RFC 8323 §5.6) before closing.
      const refuseUnverified = opts.tls.requestCert === true && opts.tls.rejectUnauthorized !== false;
      // TLS 1.2+, AEAD suites, no renegotiation (lib/transports/tls-policy.ts).
      const server = createTlsServer(
        serverTlsOptions({
          handshakeTimeout: inactivity,
          ...opts.tls,
          rejectUnauthorized: false,
        }),
      );
      server.on("secureConnection", (socket: TLSSocket) => {
        if (refuseUnverified && !socket.authorized) this.refuse(socket);
        else this.accept(socket, tlsPeerOf(socket));
      });
      server.on("tlsClientError", (err: Error, socket: TLSSocket) => {
        // A socket we closed for a connection limit was already counted and reported.
        // (Node links the TLS socket to the TCP one it wraps as _parent.)
        const parent = (socket as unknown as { _parent?: unknown })._parent;
        if (parent && this.refusedSockets.has(parent as Socket)) {
          socket.destroy();
          return;
        }
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
      // After tls.Server's own listener has wrapped the socket: closing the TCP socket
      // closes the TLS one before any handshake work is done.
      this.server.on("connection", (raw: Socket) => this.admit(raw));
    } else {
      this.server = createNetServer();
      this.server.on("connection", (socket: Socket) => {
        if (this.admit(socket)) this.accept(socket, {});
      });
    }
    // Before admit() counts the connection: the caps belong to the client's address.
    const proxied = proxyProtocolOptions(opts.proxyProtocol);
    this.proxyGate = proxied
      ? acceptProxyProtocol(this.server, proxied, (why, remote) =>
          this.report(
            new CoapTcpError("COAP_PROXY", `connection from ${remote ?? "a client"} refused: ${why}`),
          ),
        )
      : undefined;
    this.server.on("error", (err) => {
      if (this.listening)
        this.report(new CoapTcpError("COAP_CONNECT", `server socket: ${errorText(err)}`, { cause: err }));
    });
  }

  get stats(): CoapTcpServerStats {
    return { connections: this.connections.size, refused: this.refusedTotal, ...this.counters };
  }

  async listen(port: number, host?: string): Promise<{ port: number }> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new CoapTcpError("COAP_CONNECT", `cannot listen on ${host ?? "*"}:${port}: ${errorText(err)}`),
        );
      this.server.once("error", onError);
      // The kernel may queue as many connections as the server takes (a fleet all at once).
      this.server.listen({ port, host, backlog: acceptQueueFor(this.maxConnections) }, () => {
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
    // What is left never finished its TLS handshake: nothing to release, just close it.
    for (const s of this.sockets) s.destroy();
    this.proxyGate?.destroyPending();
    await closed;
  }

  /**
   * Counts a new TCP connection against the limits; over a limit it is closed at once
   * (before any TLS work) and false returned. The count is given back when it closes.
   */
  private admit(raw: Socket): boolean {
    const addr = raw.remoteAddress ?? "unknown";
    const fromAddr = this.perAddress.get(addr) ?? 0;
    if (this.held >= this.maxConnections || fromAddr >= this.maxPerAddress) {
      this.refusedSockets.add(raw);
      raw.destroy();
      this.noteRefusal(
        this.held >= this.maxConnections
          ? `the server holds its maximum of ${this.maxConnections} connections`
          : `${addr} holds its maximum of ${this.maxPerAddress} connections`,
      );
      return false;
    }
    this.held++;
    this.perAddress.set(addr, fromAddr + 1);
    this.sockets.add(raw);
    raw.once("close", () => {
      this.sockets.delete(raw);
      this.held--;
      const left = (this.perAddress.get(addr) ?? 1) - 1;
      if (left > 0) this.perAddress.set(addr, left);
      else this.perAddress.delete(addr);
    });
    return true;
  }

  /** One report for the first refusal, then at most one summary per REFUSAL_REPORT_MS. */
  private noteRefusal(why: string): void {
    this.refusedTotal++;
    this.refusedSinceReport++;
    const now = Date.now();
    if (now - this.lastRefusalReport < REFUSAL_REPORT_MS) return;
    const n = this.refusedSinceReport;
    this.refusedSinceReport = 0;
    this.lastRefusalReport = now;
    this.report(new CoapTcpError("COAP_BUSY", `${n} connection${n === 1 ? "" : "s"} refused: ${why}`));
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
        frameTimeoutMs: this.settings.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS,
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

function positiveInt(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a whole number from 1`);
  return v;
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
