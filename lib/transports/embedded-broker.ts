/**
 * An embedded MQTT broker (aedes) on a TCP or TLS listener, for serving sides that need
 * their own broker. Policy (who may connect, publish, subscribe) comes from the caller's
 * aedes hooks; this module owns sockets and their limits:
 * - a per-connection byte budget (aedes buffers a whole packet before any hook runs, so a
 *   huge PUBLISH must be cut at the socket);
 * - a bounded life for every connection, whatever keepalive its CONNECT asks for (MQTT
 *   3.1.1 section 3.1.2.10: keepalive 0 turns the server's keepalive check off, so a silent
 *   session would otherwise be held for ever): a deadline from CONNECT to the first request
 *   and a maximum lifetime;
 * - slots: a cap on simultaneous connections and one per remote address; when either is
 *   reached a newcomer takes the slot of the oldest connection that is not working on a
 *   request (answered, silent since CONNECT, or still without CONNECT), so silent sessions
 *   cannot lock honest devices out;
 * - prompt refusal: a connection the caller throttles, or that finds every slot busy, gets
 *   CONNACK "server unavailable" (MQTT 3.1.1 section 3.2.2.3, return code 3) or, for an
 *   MQTT 5 CONNECT, "server busy" (MQTT 5.0 section 3.2.2.2, reason code 0x89) rather than
 *   a socket closed unread;
 * - orderly close: what was written to a peer is flushed before its socket is ended.
 */

import type { Aedes, AedesOptions, Client, Connection } from "aedes";
import {
  createServer as createNetServer,
  isIPv6,
  type AddressInfo,
  type Server,
  type Socket,
} from "node:net";
import { createServer as createTlsServer, type TlsOptions } from "node:tls";
import { serverTlsOptions } from "./tls-policy";
import { acceptProxyProtocol, proxyProtocolOptions, type ProxyProtocolSetting } from "./proxy-listener";
import { acceptQueueFor } from "./accept-queue";
import { pathToFileURL } from "node:url";

// aedes 1.x is an ES module; TypeScript's CommonJS output would turn import() into
// require(), which Node 20 cannot do for ES modules.
const importEsm = new Function("specifier", "return import(specifier)") as (s: string) => Promise<unknown>;

type AedesModule = typeof import("aedes");

let aedesModule: Promise<AedesModule> | undefined;
export function loadAedes(): Promise<AedesModule> {
  aedesModule ??= importEsm(pathToFileURL(require.resolve("aedes")).href) as Promise<AedesModule>;
  return aedesModule;
}

export type BrokerHooks = Pick<
  AedesOptions,
  "preConnect" | "authenticate" | "authorizePublish" | "authorizeSubscribe" | "authorizeForward"
>;

export interface ConnectionLimits {
  /** Most simultaneous connections (default 1000). */
  maxConnections?: number;
  /** Most simultaneous connections from one remote address (default 100). */
  maxPerRemote?: number;
  /** Time from accept (TLS: from the TCP connection) to CONNECT, ms (default 10 s). */
  connectTimeoutMs?: number;
  /** Time from CONNECT to the session's first request, ms (default 10 s; 0 = none). */
  firstRequestMs?: number;
  /** Longest life of a connection from accept, ms (default 120 s; 0 = none). */
  maxLifetimeMs?: number;
  /**
   * How long a connection must have been silent (no CONNECT yet, or no request since it)
   * before a newcomer may take its slot, ms (default 2 s). An honest device sends CONNECT,
   * SUBSCRIBE and PUBLISH within milliseconds; without this, a burst of honest devices
   * from one address evicted each other between CONNACK and PUBLISH.
   */
  evictIdleAfterMs?: number;
}

/** Six days: aedes' heartbeat, and four times it its will check, both within setInterval's range. */
export const HEARTBEAT_MS = 6 * 24 * 3600 * 1000;

export const DEFAULT_CONNECTION_LIMITS: Readonly<Required<ConnectionLimits>> = Object.freeze({
  maxConnections: 1000,
  maxPerRemote: 100,
  connectTimeoutMs: 10000,
  firstRequestMs: 10000,
  maxLifetimeMs: 120000,
  evictIdleAfterMs: 2000,
});

/** Who a CONNECT says it is (MQTT 3.1.1 section 3.1.3: client identifier, user name). */
export interface ConnectIdentity {
  clientId: string;
  username?: string;
}

/** Why the broker itself cut or refused a connection. */
export type CutReason =
  | "evicted"
  | "first-request deadline"
  | "lifetime"
  | "throttled"
  | "full"
  /** PROXY protocol on, and the connection brought no valid header in time (./proxy-listener.ts). */
  | "proxy header";

export interface EmbeddedBrokerOptions {
  /** Bind address ("127.0.0.1", "0.0.0.0", "::"). */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Key and certificate: serve MQTT over TLS. */
  tls?: TlsOptions;
  /** Bytes one connection may send in its whole life before it is cut (0 = no limit). */
  maxConnectionBytes?: number;
  limits?: ConnectionLimits;
  /**
   * Expect a PROXY protocol header (v1 or v2, before TLS) on every connection, and take
   * the client's address from it: the slots, admit(), onCut() and remoteOf() all see it.
   */
  proxyProtocol?: ProxyProtocolSetting;
  /**
   * Asked at every CONNECT (with its user name and client id, to tell whose session it
   * is); false answers CONNACK "server unavailable" / "server busy".
   */
  admit?: (remote: string | undefined, connect: ConnectIdentity) => boolean;
  /**
   * Told (remote only, nothing the peer sent) when the broker cuts or refuses a connection;
   * `detail` says more where there is more to say (why a PROXY header was refused).
   */
  onCut?: (reason: CutReason, remote: string | undefined, detail?: string) => void;
  hooks: BrokerHooks;
}

export interface EmbeddedBroker {
  aedes: Aedes;
  host: string;
  port: number;
  tls: boolean;
  /** The peer address of a client's connection. */
  remoteOf(client: Client): string | undefined;
  /** The socket under a client's connection (a TLSSocket under TLS), for its peer certificate. */
  socketOf(client: Client): Socket | undefined;
  /** The session works on a request: its first-request deadline is met and its slot is kept. */
  beginRequest(client: Client): void;
  /** One request of the session is answered; with none left in progress its slot may be taken. */
  endRequest(client: Client): void;
  /** Connections holding a slot now (CONNECT received or not). */
  connections(): number;
  close(): Promise<void>;
}

// MQTT 3.1.1 section 3.2: CONNACK, remaining length 2, no session present, return code 3.
const CONNACK_SERVER_UNAVAILABLE = Buffer.from([0x20, 0x02, 0x00, 0x03]);
// MQTT 5.0 section 3.2: CONNACK, remaining length 3, no session present, reason code 0x89
// (server busy), no properties.
const CONNACK_SERVER_BUSY = Buffer.from([0x20, 0x03, 0x00, 0x89, 0x00]);
/**
 * Sockets let in at once only to be refused with a CONNACK when every slot is busy. A
 * gateway that opens hundreds of sessions at once from one address must hear "server
 * unavailable" (and retry), not a reset; past this the socket is closed unread.
 */
const REFUSAL_HEADROOM = 512;

/** How long an ended socket may still drain the peer's bytes before it is destroyed. */
const LINGER_MS = 2000;

/** What the broker keeps of a socket it handed to aedes. */
interface Meter {
  /** Destroys the socket at once, unflushed writes and all (hostile or evicted peers). */
  cut(err?: Error): void;
}

type Push = (chunk: unknown, encoding?: BufferEncoding) => boolean;
type Destroy = (err?: Error) => Socket;

/**
 * aedes is handed the peer's socket itself (a TLSSocket under TLS), metered in place, so a
 * session costs one stream, not two: a wrapping Duplex doubled the stream work of every
 * session (its construction, finished(), a premature-close error at every destroy).
 * - Bytes are counted where the socket hands them to its readable side (`push`, which
 *   Node's stream_base_commons onStreamRead calls for every chunk read, TLS decrypted
 *   ones included), before any consumer sees them; past the budget the socket is cut.
 * - `destroy()` without an error (aedes calls it at DISCONNECT, on close, and when a
 *   session is refused or evicted) closes in order: it ends the socket after what was
 *   written is flushed, and reads (discarding) until the peer closes, for at most
 *   LINGER_MS. Closing with unread bytes would make the kernel send a reset, which can
 *   drop answers the peer has not read yet (RFC 9293 section 3.6, RFC 1122 4.2.2.13).
 *   With an error, or once both directions are done, it is Node's own destroy; and so it
 *   is after the peer's own DISCONNECT (`saidGoodbye`) with nothing left to write: the
 *   peer sends nothing after it (MQTT 3.1.1 section 3.14.4, MQTT 5 section 3.14.4) and
 *   waits for nothing, so the orderly end's shutdown, extra read and timer (4 to 10 %
 *   of a provisioning's server time) buy nothing, and a peer that keeps its end open after
 *   DISCONNECT holds no descriptor for LINGER_MS.
 * `onClosing` is told once, when the socket stops being a session (closed or lingering).
 */
function meterSocket(
  socket: Socket,
  budget: number,
  onClosing: () => void,
  saidGoodbye: () => boolean,
): Meter {
  const push = socket.push as Push;
  const destroy = socket.destroy as Destroy;
  let received = 0;
  let lingering = false;
  const cut = (err?: Error) => {
    onClosing();
    destroy.call(socket, err);
  };
  socket.push = function meteredPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (budget > 0 && chunk !== null) {
      received += (chunk as Buffer).length;
      if (received > budget) {
        cut(new Error("the connection sent more than its byte budget"));
        return false;
      }
    }
    return push.call(socket, chunk, encoding);
  };
  socket.destroy = function orderlyDestroy(err?: Error): Socket {
    const done =
      (socket.readableEnded && socket.writableFinished) || (saidGoodbye() && !socket.writableLength);
    if (err || socket.destroyed || done || (!lingering && !socket.writable)) {
      cut(err);
      return socket;
    }
    if (lingering) return socket; // already closing in order: the linger timer ends it
    lingering = true;
    onClosing();
    const linger = setTimeout(() => destroy.call(socket), LINGER_MS);
    linger.unref();
    socket.once("close", () => clearTimeout(linger));
    socket.end();
    socket.resume();
    return socket;
  };
  return { cut };
}

/**
 * Whether the peer ended its session with a DISCONNECT packet. aedes sets `_disconnected`
 * on that packet just before it destroys the connection (lib/handlers/index.js, where it
 * also decides not to publish the will) and exposes no other sign of it.
 */
function sentDisconnect(client: Client | undefined): boolean {
  return (client as { _disconnected?: unknown } | undefined)?._disconnected === true;
}

/**
 * What the per-address cap counts: an IPv4 address (IPv4-mapped ones included), or for IPv6
 * the /64 it lies in, since one subnet (RFC 4291 section 2.5.4: a /64 interface identifier)
 * commonly belongs to one site and a host may pick any address in it.
 */
export function addressGroup(remote: string | undefined): string {
  if (!remote) return "";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  if (mapped) return mapped[1];
  const bare = remote.replace(/%.*$/, "");
  if (!isIPv6(bare)) return remote;
  const [head, tail] = bare.split("::");
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  // An embedded IPv4 suffix (::a.b.c.d) stands for two groups.
  const width = (groups: string[]) => groups.reduce((n, g) => n + (g.includes(".") ? 2 : 1), 0);
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(8 - width(left) - width(right)).fill("0"), ...right];
  return (
    groups
      .slice(0, 4)
      .map((g) => parseInt(g, 16).toString(16))
      .join(":") + "::/64"
  );
}

type SlotState = "opening" | "idle" | "working" | "answered";

interface Slot {
  /** The TCP socket; a TLS connection has its slot from the TCP connection on, handshake included. */
  raw: Socket;
  /** What aedes reads (TLS: the TLSSocket): set once the connection (the handshake) is ready. */
  conn?: Socket;
  meter?: Meter;
  remote: string | undefined;
  key: string;
  state: SlotState;
  /** When the slot entered its state (ms), for eviction. */
  since: number;
  inFlight: number;
  /** Let in only to be answered "server unavailable" at CONNECT. */
  refuse: boolean;
  /** aedes' session on this connection, from its CONNECT on. */
  client?: Client;
  timers: NodeJS.Timeout[];
  released: boolean;
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const limits = { ...DEFAULT_CONNECTION_LIMITS };
  for (const [k, v] of Object.entries(opts.limits ?? {}) as Array<[keyof ConnectionLimits, unknown]>) {
    if (typeof v === "number" && Number.isFinite(v) && v >= 0) limits[k] = v;
  }
  const { Aedes } = await loadAedes();
  // Object.assign in aedes would let an explicit undefined replace its default hook.
  const hooks = Object.fromEntries(
    Object.entries(opts.hooks).filter(([, v]) => v !== undefined),
  ) as BrokerHooks;
  const slots = new Map<Socket, Slot>();
  const byConn = new WeakMap<Socket, Slot>();
  // Kept apart from the slots: a session's remote is still wanted after its slot is gone.
  const remotes = new WeakMap<Socket, string>();
  const perRemote = new Map<string, number>();
  let held = 0;
  let refusing = 0;
  const cutFor = (reason: CutReason, remote: string | undefined, detail?: string) => {
    try {
      opts.onCut?.(reason, remote, detail);
    } catch {
      // A listener's bug must not change how the broker treats the connection.
    }
  };

  const release = (slot: Slot) => {
    if (slot.released) return;
    slot.released = true;
    for (const t of slot.timers) clearTimeout(t);
    slots.delete(slot.raw);
    if (slot.refuse) refusing--;
    else {
      held--;
      const n = (perRemote.get(slot.key) ?? 1) - 1;
      if (n > 0) perRemote.set(slot.key, n);
      else perRemote.delete(slot.key);
    }
  };
  const timer = (slot: Slot, ms: number, fn: () => void) => {
    if (ms <= 0) return;
    const t = setTimeout(fn, ms);
    t.unref();
    slot.timers.push(t);
  };

  /**
   * Frees one slot held by a connection that is doing nothing for anybody: first the oldest
   * already answered, else the oldest that has not made a request yet. Sessions working on
   * a request keep theirs. A Map iterates in insertion order, so the first match is the oldest.
   */
  const evict = (match: (s: Slot) => boolean): boolean => {
    const now = Date.now();
    let victim: Slot | undefined;
    for (const s of slots.values()) {
      if (s.refuse || !match(s)) continue;
      if (s.state === "answered") {
        victim = s;
        break;
      }
      if (
        !victim &&
        (s.state === "opening" || s.state === "idle") &&
        now - s.since >= limits.evictIdleAfterMs
      )
        victim = s;
    }
    if (!victim) return false;
    release(victim);
    cutFor("evicted", victim.remote);
    // An answered session may still have its answer on the way: close it in order, after
    // the answer is flushed. A silent one is cut.
    if (victim.conn && victim.state === "answered") victim.conn.destroy();
    else if (victim.meter) victim.meter.cut();
    else victim.raw.destroy();
    return true;
  };

  const aedes = await Aedes.createBroker({
    ...hooks,
    connectTimeout: limits.connectTimeoutMs > 0 ? limits.connectTimeoutMs : 10000,
    // aedes publishes a $SYS heartbeat every minute (and checks peer brokers' wills at four
    // times that) for brokers clustered over a shared persistence; this one stands alone, so
    // an idle gateway should not wake for it. Four times this must stay under setInterval's
    // 2^31-1 ms, beyond which Node fires it every millisecond.
    heartbeatInterval: HEARTBEAT_MS,
    preConnect: (client, packet, cb) => {
      const slot = byConn.get(client.conn as unknown as Socket);
      if (!slot?.conn) {
        cb(null, false);
        return;
      }
      const throttled =
        !slot.refuse &&
        opts.admit !== undefined &&
        !opts.admit(slot.remote, { clientId: packet.clientId, username: packet.username });
      if (slot.refuse || throttled) {
        cutFor(throttled ? "throttled" : "full", slot.remote);
        slot.conn.write(packet.protocolVersion === 5 ? CONNACK_SERVER_BUSY : CONNACK_SERVER_UNAVAILABLE);
        client.close();
        cb(null, false);
        return;
      }
      slot.client = client;
      slot.state = "idle";
      slot.since = Date.now();
      timer(slot, limits.firstRequestMs, () => {
        if (slot.state !== "idle") return;
        cutFor("first-request deadline", slot.remote);
        slot.meter?.cut();
      });
      if (hooks.preConnect) hooks.preConnect(client, packet, cb);
      else cb(null, true);
    },
  });
  // A persistence error is emitted as "error"; without a listener it would end the process.
  (aedes as unknown as NodeJS.EventEmitter).on("error", () => undefined);

  const slotOf = (client: Client) => byConn.get(client.conn as unknown as Socket);
  const sockets = new Set<Socket>();
  /** TLS: slots waiting for their handshake, by the peer's address and port (the TCP 4-tuple). */
  const handshaking = new Map<string, Slot>();
  const peerKey = (s: Socket) => `${s.remoteAddress}|${s.remotePort}`;

  /** A new TCP connection takes a slot at once, before any byte (or TLS handshake) is read. */
  const onConnection = (raw: Socket): Slot | undefined => {
    const remote = raw.remoteAddress;
    const key = addressGroup(remote);
    let refuse = false;
    if ((perRemote.get(key) ?? 0) >= limits.maxPerRemote && !evict((s) => s.key === key)) refuse = true;
    if (!refuse && held >= limits.maxConnections && !evict(() => true)) refuse = true;
    if (refuse && refusing >= REFUSAL_HEADROOM) {
      cutFor("full", remote);
      raw.destroy();
      return undefined;
    }
    sockets.add(raw);
    const slot: Slot = {
      raw,
      remote,
      key,
      state: "opening",
      since: Date.now(),
      inFlight: 0,
      refuse,
      timers: [],
      released: false,
    };
    slots.set(raw, slot);
    if (refuse) refusing++;
    else {
      held++;
      perRemote.set(key, (perRemote.get(key) ?? 0) + 1);
    }
    raw.once("close", () => {
      sockets.delete(raw);
      release(slot);
    });
    timer(slot, limits.maxLifetimeMs, () => {
      cutFor("lifetime", remote);
      if (slot.conn) slot.conn.destroy();
      else raw.destroy();
    });
    return slot;
  };

  /** The connection is ready for MQTT (TLS: handshake done): aedes reads it, metered. */
  const serve = (slot: Slot, socket: Socket) => {
    socket.setNoDelay(true);
    socket.on("error", () => undefined);
    slot.conn = socket;
    slot.meter = meterSocket(
      socket,
      opts.maxConnectionBytes ?? 0,
      () => release(slot),
      () => sentDisconnect(slot.client),
    );
    byConn.set(socket, slot);
    if (slot.remote !== undefined) remotes.set(socket, slot.remote);
    aedes.handle(socket as unknown as Connection);
  };

  let server: Server;
  if (opts.tls) {
    const tlsServer = createTlsServer(
      serverTlsOptions({
        ...opts.tls,
        handshakeTimeout: limits.connectTimeoutMs > 0 ? limits.connectTimeoutMs : 10000,
      }),
      (tlsSocket) => {
        const key = peerKey(tlsSocket);
        const slot = handshaking.get(key);
        handshaking.delete(key);
        if (!slot || slot.released) tlsSocket.destroy();
        else serve(slot, tlsSocket);
      },
    );
    // Node documents "connection" on a TLS server as the TCP stream, before the handshake.
    tlsServer.on("connection", (raw: Socket) => {
      const slot = onConnection(raw);
      if (!slot) return;
      const key = peerKey(raw);
      handshaking.set(key, slot);
      raw.once("close", () => {
        if (handshaking.get(key) === slot) handshaking.delete(key);
      });
    });
    // A failed handshake is the client's problem; the server carries on.
    tlsServer.on("tlsClientError", (_err, socket) => socket.destroy());
    server = tlsServer;
  } else {
    server = createNetServer((raw) => {
      const slot = onConnection(raw);
      if (slot) serve(slot, raw);
    });
  }
  // A backstop only: ended sockets still draining (LINGER_MS) hold no slot.
  server.maxConnections = 2 * limits.maxConnections + REFUSAL_HEADROOM;
  // And the kernel may queue as many not yet accepted (a fleet connecting all at once).
  const backlog = acceptQueueFor(server.maxConnections);
  // Before any slot is taken: the slot belongs to the client's address, not the proxy's.
  const proxied = proxyProtocolOptions(opts.proxyProtocol);
  const gate = proxied
    ? acceptProxyProtocol(server, proxied, (why, remote) => cutFor("proxy header", remote, why))
    : undefined;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port: opts.port, host: opts.host, backlog }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    // aedes runs timers from createBroker on; a port in use must not leave them behind.
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw err;
  }
  server.on("error", () => undefined);
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    aedes,
    host: opts.host,
    port,
    tls: opts.tls !== undefined,
    remoteOf: (client) => remotes.get(client.conn as unknown as Socket),
    socketOf: (client) => slotOf(client)?.conn,
    beginRequest: (client) => {
      const slot = slotOf(client);
      if (!slot) return;
      slot.inFlight++;
      slot.state = "working";
    },
    endRequest: (client) => {
      const slot = slotOf(client);
      if (!slot) return;
      slot.inFlight = Math.max(0, slot.inFlight - 1);
      if (slot.inFlight === 0) slot.state = "answered";
    },
    connections: () => held,
    close: () =>
      (closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        for (const slot of [...slots.values()]) release(slot);
        for (const s of sockets) s.destroy();
        gate?.destroyPending();
        await serverClosed;
      })()),
  };
}
