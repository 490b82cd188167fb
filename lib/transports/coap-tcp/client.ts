import { EventEmitter } from "node:events";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type DetailedPeerCertificate, type TLSSocket } from "node:tls";
import { blockwiseRequest } from "./client-blockwise";
import { szxFor } from "./blockwise";
import { Code, codeToString, methodCode } from "./codes";
import type { CoapMessage } from "./frame";
import { CoapTcpConnection, type ConnectionStats } from "./connection";
import { CoapTcpError, errorText, type CoapTcpErrorCode } from "./errors";
import { requestOptions, contentFormatOf } from "./request";
import type { PeerCapabilities } from "./signaling";
import type { CoapRequest, CoapResponse, CoapTcpClientOptions } from "./types";

const DEFAULT_CONNECT_TIMEOUT_MS = 10000;
const DEFAULT_REQUEST_TIMEOUT_MS = 10000;
export const DEFAULT_MAX_MESSAGE_SIZE = 262144;
const DEFAULT_BLOCK_SIZE = 1024;

export interface CoapTcpClientStats extends ConnectionStats {
  blocksSent: number;
  blocksReceived: number;
}

/**
 * A CoAP-over-TCP/TLS client connection (RFC 8323). Requests are matched by token, so
 * many may be in flight at once. Events: "close" (reason: string), "error" (Error; only
 * emitted when someone listens, so an unhandled "error" can never crash the process).
 */
export class CoapTcpClient extends EventEmitter {
  private readonly counters = { blocksSent: 0, blocksReceived: 0 };
  private readonly szx: number;

  private constructor(
    private readonly conn: CoapTcpConnection,
    private readonly opts: CoapTcpClientOptions,
    readonly peerCertificate: DetailedPeerCertificate | undefined,
  ) {
    super();
    this.szx = szxFor(opts.blockSize ?? DEFAULT_BLOCK_SIZE);
    conn.on("problem", (err: CoapTcpError) => {
      if (this.listenerCount("error") > 0) this.emit("error", err);
    });
    conn.on("close", (reason: string) => this.emit("close", reason));
    // CoAP over TCP is symmetric, but this side serves nothing: say so instead of staying silent.
    conn.on("request", (msg: CoapMessage) => {
      try {
        conn.send({
          code: Code.NOT_FOUND,
          token: msg.token,
          options: [],
          payload: Buffer.from("this client serves no resources"),
        });
      } catch {
        // closing; nothing to answer on
      }
    });
  }

  static async connect(opts: CoapTcpClientOptions): Promise<CoapTcpClient> {
    szxFor(opts.blockSize ?? DEFAULT_BLOCK_SIZE); // refuse a bad block size before connecting
    const maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const remote = `${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${opts.port}`;
    const deadline = Date.now() + timeoutMs;
    const socket = await openSocket(opts, remote, timeoutMs);
    const tlsSocket = opts.tls ? (socket as TLSSocket) : undefined;
    const conn = new CoapTcpConnection(socket, { maxMessageSize, blockWise: true, remote });
    conn.start();
    try {
      await conn.waitForCsm(Math.max(1, deadline - Date.now()));
    } catch (err) {
      conn.destroy(errorText(err));
      const e = err instanceof CoapTcpError ? err : new CoapTcpError("COAP_CONNECT", errorText(err));
      throw new CoapTcpError(e.code, `connecting to ${remote}: ${e.message}`, { cause: err });
    }
    const cert = tlsSocket?.getPeerCertificate(true);
    return new CoapTcpClient(conn, opts, cert && Object.keys(cert).length ? cert : undefined);
  }

  /** What the server announced in its CSM. */
  get peer(): PeerCapabilities {
    return { ...this.conn.peer };
  }

  get closed(): boolean {
    return this.conn.closed;
  }

  get stats(): CoapTcpClientStats {
    return { ...this.conn.stats, ...this.counters };
  }

  /**
   * Sends a request and resolves with the final response, whatever its code (4.xx and
   * 5.xx are answers, not errors). Rejects with CoapTcpError on timeout, cancel, a closed
   * connection or a protocol violation; the connection stays usable after a timeout.
   */
  async request(
    req: CoapRequest,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<CoapResponse> {
    let code: number;
    let options;
    try {
      code = methodCode(req.method);
      options = requestOptions(req);
    } catch (err) {
      throw new CoapTcpError("COAP_BAD_REQUEST", errorText(err));
    }
    const timeoutMs = opts.timeoutMs ?? this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const resp = await blockwiseRequest(this.conn, code, options, req.payload ?? Buffer.alloc(0), {
      szx: this.szx,
      maxBodySize: this.opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      deadline: Date.now() + timeoutMs,
      timeoutMs,
      signal: opts.signal,
      counters: this.counters,
    });
    const contentFormat = contentFormatOf(resp.options);
    return {
      code: codeToString(resp.code),
      ...(contentFormat !== undefined ? { contentFormat } : {}),
      payload: resp.payload,
      options: resp.options,
    };
  }

  /** Ping (7.02) and wait for the Pong (7.03). */
  ping(timeoutMs?: number): Promise<void> {
    return this.conn.ping(timeoutMs ?? this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
  }

  /** Sends Release (7.04) and resolves once the connection is closed. */
  close(): Promise<void> {
    return this.conn.release("closed by the client");
  }
}

function openSocket(opts: CoapTcpClientOptions, remote: string, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    let socket: Socket;
    const fail = (code: CoapTcpErrorCode, message: string, cause?: unknown) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new CoapTcpError(code, `connecting to ${remote}: ${message}`, { cause }));
    };
    const timer = setTimeout(
      () =>
        fail("COAP_TIMEOUT", `no ${opts.tls ? "TLS handshake" : "TCP connection"} within ${timeoutMs} ms`),
      timeoutMs,
    );
    const onError = (err: Error) => {
      const tls =
        opts.tls &&
        /SSL|TLS|certificate|CERT|alert|self.signed|hostname|altnames/i.test(
          `${err.message} ${(err as NodeJS.ErrnoException).code ?? ""}`,
        );
      fail(tls ? "COAP_TLS" : "COAP_CONNECT", `${tls ? "TLS handshake failed: " : ""}${errorText(err)}`, err);
    };
    const ready = () => {
      clearTimeout(timer);
      socket.off("error", onError);
      socket.setNoDelay(true);
      resolve(socket);
    };
    if (opts.tls) {
      socket = tlsConnect({ ALPNProtocols: ["coap"], ...opts.tls, host: opts.host, port: opts.port }, ready);
    } else {
      socket = netConnect({ host: opts.host, port: opts.port }, ready);
    }
    socket.once("error", onError);
  });
}
