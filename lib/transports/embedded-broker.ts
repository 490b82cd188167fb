/**
 * An embedded MQTT broker (aedes) on a TCP or TLS listener, for serving sides that need
 * their own broker. Policy (who may connect, publish, subscribe) comes from the caller's
 * aedes hooks; this module owns sockets, a per-connection byte budget (aedes buffers a
 * whole packet before any hook runs, so a huge PUBLISH must be cut at the socket), and
 * shutdown.
 */

import type { Aedes, AedesOptions, Client, Connection } from "aedes";
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { createServer as createTlsServer, type TlsOptions } from "node:tls";
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
  | "preConnect"
  | "authenticate"
  | "authorizePublish"
  | "authorizeSubscribe"
  | "authorizeForward"
  | "connectTimeout"
>;

export interface EmbeddedBrokerOptions {
  /** Bind address ("127.0.0.1", "0.0.0.0", "::"). */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Key and certificate: serve MQTT over TLS. */
  tls?: TlsOptions;
  /** Bytes one connection may send in its whole life before it is cut (0 = no limit). */
  maxConnectionBytes?: number;
  /** Most simultaneous connections (default 1000). */
  maxConnections?: number;
  /** Asked for every new socket; false closes it before a byte is read. */
  admit?: (remote: string | undefined) => boolean;
  hooks: BrokerHooks;
}

export interface EmbeddedBroker {
  aedes: Aedes;
  host: string;
  port: number;
  tls: boolean;
  /** The peer address of a client's connection. */
  remoteOf(client: Client): string | undefined;
  close(): Promise<void>;
}

/** Counts what the peer sends and cuts the connection once it passes its budget. */
class MeteredConnection extends Duplex {
  private received = 0;

  constructor(
    private readonly socket: Socket,
    private readonly budget: number,
  ) {
    super({ allowHalfOpen: false });
    socket.on("data", (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.budget > 0 && this.received > this.budget) {
        this.destroy(new Error("the connection sent more than its byte budget"));
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.socket.write(chunk)) cb();
    else this.socket.once("drain", () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { Aedes } = await loadAedes();
  // Object.assign in aedes would let an explicit undefined replace its default hook.
  const hooks = Object.fromEntries(Object.entries(opts.hooks).filter(([, v]) => v !== undefined));
  const aedes = await Aedes.createBroker({ connectTimeout: 10000, ...hooks });
  // A persistence error is emitted as "error"; without a listener it would end the process.
  (aedes as unknown as NodeJS.EventEmitter).on("error", () => undefined);

  const remotes = new WeakMap<Connection, string>();
  const sockets = new Set<Socket>();
  const onSocket = (socket: Socket) => {
    const remote = socket.remoteAddress;
    if (opts.admit && !opts.admit(remote)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    const conn = new MeteredConnection(socket, opts.maxConnectionBytes ?? 0);
    conn.on("error", () => undefined);
    if (remote !== undefined) remotes.set(conn, remote);
    aedes.handle(conn);
  };

  let server: Server;
  if (opts.tls) {
    const tlsServer = createTlsServer(opts.tls, onSocket);
    // A failed handshake is the client's problem; the server carries on.
    tlsServer.on("tlsClientError", (_err, socket) => socket.destroy());
    server = tlsServer;
  } else {
    server = createNetServer(onSocket);
  }
  server.maxConnections = opts.maxConnections ?? 1000;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port, opts.host, () => {
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
    remoteOf: (client) => remotes.get(client.conn),
    close: () =>
      (closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        for (const s of sockets) s.destroy();
        await serverClosed;
      })()),
  };
}
