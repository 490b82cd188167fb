/**
 * Opt-in PROXY protocol (haproxy's doc/proxy-protocol.txt) in front of a listening TCP,
 * TLS or HTTPS server: each accepted connection must first send a PROXY header (HAProxy's
 * `send-proxy` / `send-proxy-v2`), and only then does the server see it, with the
 * client's address as its `remoteAddress` / `remotePort` / `remoteFamily` (the TLS
 * socket wrapped around it too). Everything downstream that keys on the peer address
 * (per-address caps, rate limits, failure limiters, audit) then counts devices, not the
 * proxy. One helper for every listener, so no dialect reads the header itself.
 *
 * How: a net.Server emits "connection" for each accepted socket, and tls.Server (so
 * https.Server) wraps the socket in its own "connection" listener, added in its
 * constructor, before any other listener could hold it back. So the gate holds the
 * emit itself: the socket reaches the server's listeners once its header is read, its
 * remaining bytes (the first of MQTT, CoAP, or the TLS ClientHello, which precedes the
 * handshake and so must be read on the raw socket) unshifted for them. Node documents
 * emitting "connection" to hand a server a socket (http.Server "connection"; tls.Server
 * takes any duplex it is handed).
 *
 * The header is believed from whoever can reach the port: the listener must be reachable
 * only from the proxy (section 7 of the spec: "the receiver must be configured to only
 * receive the protocol", and only from trusted senders).
 */
import type { Server, Socket } from "node:net";
import { Server as TlsServer, type TLSSocket } from "node:tls";
import { ProxyHeaderReader, type ProxyAddress } from "./proxy-protocol";

/** Time for the whole header to arrive: a proxy sends it with its first segment. */
export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 3000;
/** Connections waiting for their header at once; past it newcomers are closed unread. */
export const DEFAULT_PROXY_MAX_PENDING = 1000;

export interface ProxyProtocolOptions {
  /** ms from accept to the end of the header (default 3 s). */
  headerTimeoutMs?: number;
  maxPending?: number;
  /** TLV bytes accepted after a v2 address block (default 1 KiB, proxy-protocol.ts). */
  maxTlvBytes?: number;
}

/** A setting's value: false/undefined off, true on with the defaults, or the options. */
export type ProxyProtocolSetting = boolean | ProxyProtocolOptions | undefined;

export interface ProxyProtocolGate {
  /** Connections accepted and still waiting for their header. */
  pending(): number;
  /** Closes them (the server's close() would otherwise wait for their deadline). */
  destroyPending(): void;
}

/**
 * Told why a connection was closed before the server saw it, with the address it came
 * from (the proxy's, or whoever else reached the port): never the bytes it sent.
 */
export type ProxyRefusal = (reason: string, remote: string | undefined) => void;

export function proxyProtocolOptions(setting: ProxyProtocolSetting): ProxyProtocolOptions | undefined {
  if (!setting) return undefined;
  return setting === true ? {} : setting;
}

function present(socket: Socket, a: ProxyAddress): void {
  // Own properties shadow net.Socket's getters (which ask the kernel for the proxy's).
  for (const [k, v] of [
    ["remoteAddress", a.address],
    ["remotePort", a.port],
    ["remoteFamily", a.family],
  ] as const)
    Object.defineProperty(socket, k, { value: v, configurable: true, enumerable: true });
}

/**
 * Puts the gate in front of `server` (before it listens or after: it applies to the
 * connections accepted from then on).
 */
export function acceptProxyProtocol(
  server: Server,
  opts: ProxyProtocolOptions,
  onRefused: ProxyRefusal,
): ProxyProtocolGate {
  const timeoutMs = opts.headerTimeoutMs ?? DEFAULT_PROXY_HEADER_TIMEOUT_MS;
  const maxPending = opts.maxPending ?? DEFAULT_PROXY_MAX_PENDING;
  const pending = new Set<Socket>();
  const passed = new WeakSet<Socket>();
  /**
   * The client's address by the connection's real peer (proxy address and port, unique
   * among open connections), for the TLS socket tls.Server makes of the raw one: it asks
   * the kernel through its own handle, not the raw socket's properties.
   */
  const byPeer = new Map<string, ProxyAddress>();
  const refuse = (reason: string, remote: string | undefined) => {
    try {
      onRefused(reason, remote);
    } catch {
      // A listener's bug must not change how the connection is treated.
    }
  };

  const serverEmit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  const hand = (raw: Socket) => {
    passed.add(raw);
    serverEmit("connection", raw);
  };

  const gate = (raw: Socket) => {
    const remote = raw.remoteAddress;
    if (pending.size >= maxPending) {
      refuse(`${pending.size} connections already wait for their PROXY header`, remote);
      raw.destroy();
      return;
    }
    pending.add(raw);
    const reader = new ProxyHeaderReader({ maxTlvBytes: opts.maxTlvBytes });
    const ignore = () => undefined;
    const done = () => {
      clearTimeout(timer);
      pending.delete(raw);
      raw.off("readable", onReadable);
      raw.off("error", ignore);
      raw.off("close", onClose);
    };
    const fail = (reason: string) => {
      done();
      refuse(reason, remote);
      raw.destroy();
    };
    const timer = setTimeout(() => fail(`no complete PROXY header within ${timeoutMs} ms`), timeoutMs);
    timer.unref();
    // A peer gone before its header (a TCP probe) just leaves.
    const onClose = () => done();
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = raw.read() as Buffer | null) !== null) {
        const r = reader.push(chunk);
        if (r.state === "more") continue;
        if (r.state === "refused") return fail(r.reason);
        done();
        const src = r.header.source;
        if (src) {
          const key = `${raw.remoteAddress}|${raw.remotePort}`;
          byPeer.set(key, src);
          raw.once("close", () => byPeer.delete(key));
          present(raw, src);
        }
        if (r.rest.length > 0) raw.unshift(r.rest);
        hand(raw);
        return;
      }
    };
    raw.on("error", ignore);
    raw.on("close", onClose);
    raw.on("readable", onReadable);
  };

  (server as unknown as { emit: typeof serverEmit }).emit = (event, ...args) => {
    if (event === "connection" && !passed.has(args[0] as Socket)) {
      gate(args[0] as Socket);
      return true;
    }
    return serverEmit(event, ...args);
  };

  if (server instanceof TlsServer) {
    const patch = (s: TLSSocket) => {
      const src = byPeer.get(`${s.remoteAddress}|${s.remotePort}`);
      if (src) present(s, src);
    };
    // Before the server's own listeners (https.Server's request handling among them).
    server.prependListener("secureConnection", patch);
    server.prependListener("tlsClientError", (_err: Error, s: TLSSocket) => patch(s));
  }

  return {
    pending: () => pending.size,
    destroyPending: () => {
      for (const s of [...pending]) s.destroy();
    },
  };
}
