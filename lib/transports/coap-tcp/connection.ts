import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { Code, codeClass, codeToString } from "./codes";
import { CoapFormatError, CoapTcpError, errorText, type CoapTcpErrorCode } from "./errors";
import { encodeMessage, FrameParser, type CoapMessage } from "./frame";
import {
  abort as abortMsg,
  applyCsm,
  BadSignalingOption,
  BASE_MAX_MESSAGE_SIZE,
  checkSignalingOptions,
  csm,
  describeAbort,
  describeRelease,
  ping as pingMsg,
  pongFor,
  release as releaseMsg,
  type PeerCapabilities,
} from "./signaling";
import { TokenSource } from "./tokens";

export interface ConnectionOptions {
  /** Largest message we accept; announced in our CSM. */
  maxMessageSize: number;
  /** Announce Block-Wise-Transfer support in our CSM. */
  blockWise: boolean;
  /** "127.0.0.1:5684", for messages. */
  remote: string;
  /**
   * Close (with Release) after this long without traffic in either direction. Only whole
   * messages count as traffic: bytes of a message still arriving do not.
   */
  inactivityTimeoutMs?: number;
  /**
   * A message that has begun must be complete within this long, however its bytes trickle
   * in (a peer sending one byte a second would otherwise hold the connection for ever).
   * Abort when it is not. Default: no deadline.
   */
  frameTimeoutMs?: number;
}

/** Counters for tests and benchmarks. */
export interface ConnectionStats {
  messagesSent: number;
  messagesReceived: number;
  bytesSent: number;
  bytesReceived: number;
}

interface Pending {
  resolve: (msg: CoapMessage) => void;
  reject: (err: CoapTcpError) => void;
}

/** How long a half-closed connection may linger after we sent Release or Abort. */
const LINGER_MS = 2000;

/**
 * One CoAP-over-TCP connection (RFC 8323), either side: framing, CSM exchange,
 * Ping/Pong, Release/Abort and token-matched exchanges. Requests the peer sends are
 * handed to the "request" listener; block-wise logic lives above this class.
 *
 * Events: "csm" (PeerCapabilities), "request" (CoapMessage), "problem" (CoapTcpError:
 * something the owner may report), "close" (reason: string, code: CoapTcpErrorCode).
 * It never emits "error", so an owner without listeners cannot crash the process.
 */
export class CoapTcpConnection extends EventEmitter {
  peer: PeerCapabilities = { maxMessageSize: BASE_MAX_MESSAGE_SIZE, blockWise: false };
  csmReceived = false;
  closed = false;
  closeReason?: string;
  closeCode?: CoapTcpErrorCode;
  readonly stats: ConnectionStats = { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0 };

  private readonly parser: FrameParser;
  private readonly pending = new Map<string, Pending>();
  private readonly pings = new Map<string, Pending>();
  private readonly tokens = new TokenSource();
  private inactivityTimer?: NodeJS.Timeout;
  private frameTimer?: NodeJS.Timeout;
  private lingerTimer?: NodeJS.Timeout;
  private ending = false;
  private started = false;
  private corked = false;

  constructor(
    readonly socket: Socket,
    readonly opts: ConnectionOptions,
  ) {
    super();
    this.parser = new FrameParser(opts.maxMessageSize);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err: Error) => this.onSocketError(err));
    socket.on("end", () =>
      this.finish(
        this.closeReason ?? `${opts.remote} closed the connection`,
        this.closeCode ?? "COAP_CLOSED",
      ),
    );
    socket.on("close", () =>
      this.finish(this.closeReason ?? "connection closed", this.closeCode ?? "COAP_CLOSED", true),
    );
  }

  /** Sends our CSM: call once the transport (TCP or the TLS handshake) is up. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.touch();
    this.sendRaw(csm(this.opts.maxMessageSize, this.opts.blockWise));
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Resolves once the peer's first CSM has arrived. */
  waitForCsm(timeoutMs: number): Promise<PeerCapabilities> {
    if (this.csmReceived) return Promise.resolve(this.peer);
    if (this.closed) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off("csm", onCsm);
        this.off("close", onClose);
      };
      const onCsm = (caps: PeerCapabilities) => {
        cleanup();
        resolve(caps);
      };
      const onClose = () => {
        cleanup();
        reject(this.closedError());
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new CoapTcpError("COAP_TIMEOUT", `no CSM from ${this.opts.remote} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on("csm", onCsm);
      this.on("close", onClose);
    });
  }

  /** Sends a message as is; throws CoapTcpError when closed or larger than the peer accepts. */
  send(msg: CoapMessage): void {
    if (this.closed || this.ending) throw this.closedError();
    const frame = encodeMessage(msg);
    if (frame.length > this.peer.maxMessageSize) {
      throw new CoapTcpError(
        "COAP_TOO_LARGE",
        `message of ${frame.length} bytes exceeds ${this.opts.remote}'s Max-Message-Size ${this.peer.maxMessageSize}`,
      );
    }
    this.write(frame);
  }

  /**
   * Sends a request with a fresh token and resolves with the response that carries it.
   * A timeout or abort forgets the token, so a late answer is dropped and the
   * connection stays usable.
   */
  exchange(msg: Omit<CoapMessage, "token">, timeoutMs: number, signal?: AbortSignal): Promise<CoapMessage> {
    return this.track(this.pending, msg, timeoutMs, signal, `response to ${codeToString(msg.code)}`);
  }

  ping(timeoutMs: number, custody = false): Promise<void> {
    return this.track(this.pings, pingMsg(Buffer.alloc(0), custody), timeoutMs, undefined, "Pong").then(
      () => undefined,
    );
  }

  /** Graceful close (RFC 8323 §5.5): Release, then end our side; resolves once closed. */
  release(reason = "closed by us"): Promise<void> {
    if (this.closed) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.once("close", () => resolve()));
    if (!this.ending) {
      this.closeReason ??= reason;
      this.closeCode ??= "COAP_CLOSED";
      this.sendSignal(releaseMsg());
      this.endSoon();
    }
    return done;
  }

  /** Abort (RFC 8323 §5.6) with a diagnostic, then close. */
  abort(diagnostic: string, badCsmOption?: number): void {
    if (this.closed || this.ending) return;
    this.closeReason ??= `aborted: ${diagnostic}`;
    this.closeCode ??= "COAP_PROTOCOL";
    this.sendSignal(abortMsg(diagnostic, badCsmOption));
    this.endSoon();
  }

  destroy(reason: string, code: CoapTcpErrorCode = "COAP_CLOSED"): void {
    this.closeReason ??= reason;
    this.closeCode ??= code;
    this.socket.destroy();
    this.finish(reason, code, true);
  }

  private track(
    map: Map<string, Pending>,
    msg: Omit<CoapMessage, "token">,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<CoapMessage> {
    if (this.closed || this.ending) return Promise.reject(this.closedError());
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    let token = this.tokens.next();
    while (map.has(token.toString("hex"))) token = this.tokens.next();
    const key = token.toString("hex");
    return new Promise<CoapMessage>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        map.delete(key);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        cleanup();
        reject(cancelled(signal));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new CoapTcpError("COAP_TIMEOUT", `no ${what} from ${this.opts.remote} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      map.set(key, {
        resolve: (m) => {
          cleanup();
          resolve(m);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.send({ ...msg, token });
      } catch (err) {
        cleanup();
        reject(err instanceof CoapTcpError ? err : new CoapTcpError("COAP_BAD_REQUEST", errorText(err)));
      }
    });
  }

  private onData(chunk: Buffer): void {
    this.stats.bytesReceived += chunk.length;
    const { messages, error } = this.parser.push(chunk);
    if (messages.length > 0) this.touch();
    if (!error) this.frameDeadline(messages.length > 0);
    for (const msg of messages) {
      if (this.closed) return;
      this.stats.messagesReceived++;
      try {
        this.dispatch(msg);
      } catch (err) {
        this.protocolFailure(err);
        return;
      }
    }
    if (error) this.protocolFailure(error);
  }

  private protocolFailure(err: unknown): void {
    const text = errorText(err);
    const tooLarge = err instanceof CoapFormatError && err.tooLarge;
    const problem = new CoapTcpError(
      tooLarge ? "COAP_TOO_LARGE" : "COAP_PROTOCOL",
      `${this.opts.remote}: ${text}`,
    );
    this.emit("problem", problem);
    this.closeReason ??= `aborted: ${text}`;
    this.closeCode ??= problem.code;
    this.abort(
      text,
      err instanceof BadSignalingOption && err.signalCode === Code.CSM ? err.optionNumber : undefined,
    );
  }

  private dispatch(msg: CoapMessage): void {
    const cls = codeClass(msg.code);
    if (msg.code === Code.EMPTY) return; // RFC 8323 §3.4: always ignored; useful as keepalive
    // Abort may come first: a server refusing our certificate has nothing else to say.
    if (!this.csmReceived && msg.code !== Code.CSM && msg.code !== Code.ABORT) {
      throw new CoapFormatError(`expected a CSM as the first message, got ${codeToString(msg.code)}`);
    }
    if (cls === 7) return this.onSignal(msg);
    if (cls === 0) {
      this.emit("request", msg);
      return;
    }
    if (cls === 2 || cls === 4 || cls === 5) {
      this.pending.get(msg.token.toString("hex"))?.resolve(msg);
    }
    // Other classes are reserved; a response to a forgotten token is dropped.
  }

  private onSignal(msg: CoapMessage): void {
    checkSignalingOptions(msg);
    switch (msg.code) {
      case Code.CSM: {
        this.peer = applyCsm(this.peer, msg);
        const first = !this.csmReceived;
        this.csmReceived = true;
        if (first) this.emit("csm", this.peer);
        return;
      }
      case Code.PING:
        if (!this.ending) this.sendSignal(pongFor(msg));
        return;
      case Code.PONG: {
        // libcoap 4.3 answers with an empty token: then it answers our oldest Ping.
        const match = this.pings.get(msg.token.toString("hex")) ?? this.pings.values().next().value;
        match?.resolve(msg);
        return;
      }
      case Code.RELEASE:
        this.closeReason ??= `${this.opts.remote} released the connection${describeRelease(msg)}`;
        this.closeCode ??= "COAP_RELEASED";
        this.failPending(this.closedError());
        this.endSoon();
        return;
      case Code.ABORT:
        this.closeReason ??= `${this.opts.remote} aborted the connection: ${describeAbort(msg)}`;
        this.closeCode ??= "COAP_ABORTED";
        this.emit("problem", new CoapTcpError("COAP_ABORTED", this.closeReason));
        this.destroy(this.closeReason, "COAP_ABORTED");
        return;
      default:
        return; // unassigned signaling codes carry nothing we could act on
    }
  }

  private sendSignal(msg: CoapMessage): void {
    try {
      this.sendRaw(msg);
    } catch {
      // the socket is already gone; close handling reports why
    }
  }

  /** Signaling is small and must go out even before the peer's CSM is known. */
  private sendRaw(msg: CoapMessage): void {
    if (this.closed || this.ending) return;
    this.write(encodeMessage(msg));
  }

  private write(frame: Buffer): void {
    this.stats.messagesSent++;
    this.stats.bytesSent += frame.length;
    this.touch();
    // Coalesce the messages of one tick (many concurrent requests, or a response and
    // its signaling) into one write instead of one syscall each.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame);
  }

  /** Starts, keeps or stops the deadline of the message now arriving. */
  private frameDeadline(completedSome: boolean): void {
    const ms = this.opts.frameTimeoutMs;
    if (!ms || this.closed || this.ending) return;
    if (this.parser.pending === 0) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
      return;
    }
    // A message that began in this chunk after others completed gets its own deadline.
    if (this.frameTimer && !completedSome) return;
    clearTimeout(this.frameTimer);
    this.frameTimer = setTimeout(() => {
      this.frameTimer = undefined;
      if (this.closed || this.ending || this.parser.pending === 0) return;
      const text = `a message from ${this.opts.remote} was not complete within ${ms} ms (${this.parser.pending} bytes of it received)`;
      this.closeReason ??= `aborted: ${text}`;
      this.closeCode ??= "COAP_TIMEOUT";
      this.emit("problem", new CoapTcpError("COAP_TIMEOUT", text));
      this.abort(`message not complete within ${ms} ms`);
    }, ms);
  }

  private endSoon(): void {
    if (this.ending) return;
    this.ending = true;
    clearTimeout(this.inactivityTimer);
    clearTimeout(this.frameTimer);
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), LINGER_MS);
    this.lingerTimer.unref();
  }

  private touch(): void {
    const ms = this.opts.inactivityTimeoutMs;
    if (!ms || this.closed || this.ending) return;
    if (this.inactivityTimer) {
      this.inactivityTimer.refresh();
      return;
    }
    this.inactivityTimer = setTimeout(() => {
      if (this.closed || this.ending) return;
      this.closeReason ??= `no traffic from ${this.opts.remote} for ${ms} ms`;
      this.closeCode ??= "COAP_TIMEOUT";
      this.emit("problem", new CoapTcpError("COAP_TIMEOUT", this.closeReason));
      void this.release(this.closeReason);
    }, ms);
  }

  private onSocketError(err: Error): void {
    const tls = /SSL|TLS|certificate|alert|CERT/i.test(
      `${err.message} ${(err as NodeJS.ErrnoException).code ?? ""}`,
    );
    const code: CoapTcpErrorCode = tls ? "COAP_TLS" : "COAP_CLOSED";
    if ((err as NodeJS.ErrnoException).code === "ERR_TLS_SESSION_ATTACK") {
      // Node counts renegotiations and reports the flood on the socket, but keeps it open
      // (https://nodejs.org/api/tls.html#client-initiated-renegotiation-attack-mitigation).
      const why = `${this.opts.remote} renegotiated TLS too often; connection closed`;
      if (!this.closeReason) this.emit("problem", new CoapTcpError("COAP_TLS", why, { cause: err }));
      this.destroy(why, "COAP_TLS");
      return;
    }
    const reason = `${tls ? "TLS" : "socket"} error with ${this.opts.remote}: ${errorText(err)}`;
    if (!this.closeReason) {
      this.closeReason = reason;
      this.closeCode = code;
      // Errors after our own Release/Abort (a reset while lingering) are not news.
      this.emit("problem", new CoapTcpError(code, reason, { cause: err }));
    }
  }

  private finish(reason: string, code: CoapTcpErrorCode, socketClosed = false): void {
    if (!socketClosed) {
      // The peer ended its side: answer with ours; wait for "close" to report.
      if (this.parser.pending > 0 && !this.closeReason) {
        reason = `${this.opts.remote} closed the connection in the middle of a message (${this.parser.pending} bytes of it received)`;
        code = "COAP_PROTOCOL";
        this.emit("problem", new CoapTcpError(code, reason));
      }
      this.closeReason ??= reason;
      this.closeCode ??= code;
      this.failPending(this.closedError());
      this.endSoon();
      return;
    }
    if (this.closed) return;
    this.closed = true;
    this.closeReason ??= reason;
    this.closeCode ??= code;
    clearTimeout(this.inactivityTimer);
    clearTimeout(this.frameTimer);
    clearTimeout(this.lingerTimer);
    this.failPending(this.closedError());
    this.emit("close", this.closeReason, this.closeCode);
  }

  private failPending(err: CoapTcpError): void {
    for (const p of [...this.pending.values(), ...this.pings.values()]) p.reject(err);
  }

  private closedError(): CoapTcpError {
    return new CoapTcpError(
      this.closeCode ?? "COAP_CLOSED",
      this.closeReason ?? `connection to ${this.opts.remote} is closed`,
    );
  }
}

function cancelled(signal?: AbortSignal): CoapTcpError {
  const reason: unknown = signal?.reason;
  return new CoapTcpError("COAP_CANCELLED", `request cancelled${reason ? `: ${errorText(reason)}` : ""}`, {
    cause: reason,
  });
}
