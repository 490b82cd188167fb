/**
 * One embedded MQTT broker per port, shared by every serving dialect that attaches its
 * topics to it, as a real broker serves ThingsBoard's /provision/request next to other
 * protocols' topics (Eclipse Kura's $EDC/..., AWS IoT's $aws/certificates/...). The first
 * attach starts the broker (lib/transports/embedded-broker.ts: sockets, slots, limits);
 * the last detach stops it.
 *
 * Each session belongs to one dialect, chosen at CONNECT by its user name or client id
 * (`claims`); that dialect alone decides what the session may subscribe to and publish,
 * and a message reaches a session only when its own dialect forwards it, so dialects on
 * one port never see each other's topics. Settings that belong to the port (TLS, slots,
 * deadlines, byte budget) must agree between dialects: a second attach with other ones
 * is a CONFIG error naming the port and the dialect that holds it.
 */

import type { AuthenticateError, Client } from "aedes";
import { isDeepStrictEqual } from "node:util";
import type { TlsOptions } from "node:tls";
import { finalError } from "../model/errors";
import {
  DEFAULT_CONNECTION_LIMITS,
  startEmbeddedBroker,
  type BrokerHooks,
  type ConnectIdentity,
  type ConnectionLimits,
  type CutReason,
  type EmbeddedBroker,
} from "./embedded-broker";

/** What belongs to the port, and must be the same for every dialect on it. */
export interface MqttListenerSettings {
  /** Bind address. */
  host: string;
  /** 0 starts a broker of its own on a free port (never shared). */
  port: number;
  tls?: TlsOptions;
  maxConnectionBytes?: number;
  limits?: ConnectionLimits;
  /** Every connection begins with a PROXY protocol header (embedded-broker.ts). */
  proxyProtocol?: boolean;
}

/** One dialect's part of a shared broker. */
export interface MqttDialectHandler {
  /** The dialect id, for error texts and to refuse the same dialect twice on one port. */
  name: string;
  /** Whether a CONNECT is one of this dialect's sessions (its user name or client id). */
  claims(connect: ConnectIdentity): boolean;
  /** The dialect's rate limit at CONNECT for its own sessions; false refuses with CONNACK 3. */
  admit?(remote: string | undefined): boolean;
  /** Told when the broker cuts or refuses a connection (whoever's it was: it may have no owner yet). */
  onCut?(reason: CutReason, remote: string | undefined, detail?: string): void;
  /**
   * Told when a CONNECT is refused because no dialect on the port claims it (return code
   * 5), so a dialect that owns sessions by client id can audit an unknown one.
   */
  onUnclaimed?(connect: ConnectIdentity, remote: string | undefined): void;
  hooks: BrokerHooks;
}

export interface MqttAttachment {
  /** The shared broker: its port, remoteOf(), beginRequest() and endRequest(). */
  readonly broker: EmbeddedBroker;
  /** Takes this dialect off the port; the last one to leave stops the broker. */
  detach(): Promise<void>;
}

interface Hub {
  key: string;
  settings: MqttListenerSettings;
  handlers: MqttDialectHandler[];
  broker: Promise<EmbeddedBroker>;
  owners: WeakMap<Client, MqttDialectHandler>;
  /** Each dialect's connected sessions, closed when it detaches while others stay. */
  sessions: Map<MqttDialectHandler, Set<Client>>;
}

const hubs = new Map<string, Hub>();
/** Brokers being stopped, by port: an attach waits for the port to be free again (a redeploy). */
const stopping = new Map<string, Promise<void>>();

/** Both settings must give the port the same TLS material and the same limits. */
function conflict(a: MqttListenerSettings, b: MqttListenerSettings): string | undefined {
  if (Boolean(a.tls) !== Boolean(b.tls)) return a.tls ? "it serves TLS there" : "it serves plain MQTT there";
  if (Boolean(a.proxyProtocol) !== Boolean(b.proxyProtocol))
    return a.proxyProtocol
      ? "it expects a PROXY protocol header there"
      : "it expects no PROXY protocol header there";
  if (a.tls && b.tls && !isDeepStrictEqual(tlsMaterial(a.tls), tlsMaterial(b.tls)))
    return "it serves TLS there with another certificate";
  const la = { ...DEFAULT_CONNECTION_LIMITS, ...(a.limits ?? {}) };
  const lb = { ...DEFAULT_CONNECTION_LIMITS, ...(b.limits ?? {}) };
  for (const k of Object.keys(la) as Array<keyof ConnectionLimits>)
    if (la[k] !== lb[k]) return `its ${k} there is ${la[k]}, not ${lb[k]}`;
  if ((a.maxConnectionBytes ?? 0) !== (b.maxConnectionBytes ?? 0))
    return `its byte budget per connection there is ${a.maxConnectionBytes ?? 0}, not ${b.maxConnectionBytes ?? 0}`;
  return undefined;
}

function tlsMaterial(t: TlsOptions): unknown[] {
  const s = (v: unknown) => (Buffer.isBuffer(v) ? v.toString("utf8") : v);
  return [s(t.key), s(t.cert), s(t.ca), t.passphrase, t.requestCert, t.rejectUnauthorized];
}

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function startHub(key: string, settings: MqttListenerSettings): Hub {
  const hub: Hub = {
    key,
    settings,
    handlers: [],
    owners: new WeakMap(),
    sessions: new Map(),
    broker: undefined as never,
  };
  /** The broker once listening: its remoteOf() for the hooks (they only run after that). */
  let started: EmbeddedBroker | undefined;
  const ownerOf = (connect: ConnectIdentity) => hub.handlers.find((h) => h.claims(connect));
  const owned = (client: Client | null) => (client ? hub.owners.get(client) : undefined);
  hub.broker = startEmbeddedBroker({
    host: settings.host,
    port: settings.port,
    tls: settings.tls,
    maxConnectionBytes: settings.maxConnectionBytes,
    limits: settings.limits,
    proxyProtocol: settings.proxyProtocol === true,
    admit: (remote, connect) => {
      const h = ownerOf(connect);
      return !h?.admit || h.admit(remote);
    },
    onCut: (reason, remote, detail) => {
      for (const h of hub.handlers) {
        try {
          h.onCut?.(reason, remote, detail);
        } catch {
          // One dialect's listener must not keep the others from hearing it.
        }
      }
    },
    hooks: {
      preConnect: (client, packet, cb) => {
        const h = ownerOf({ clientId: packet.clientId, username: packet.username });
        if (h) hub.owners.set(client, h);
        if (h?.hooks.preConnect) h.hooks.preConnect(client, packet, cb);
        else cb(null, true);
      },
      authenticate: (client, username, password, done) => {
        const h = owned(client);
        if (!h) {
          for (const other of hub.handlers) {
            try {
              other.onUnclaimed?.({ clientId: client.id, username }, started?.remoteOf(client));
            } catch {
              // One dialect's listener must not keep the others from hearing it.
            }
          }
          return done(refusal("no service on this port takes that session", 5), false);
        }
        const admitted: typeof done = (err, ok) => {
          if (!err && ok) {
            let set = hub.sessions.get(h);
            if (!set) hub.sessions.set(h, (set = new Set()));
            set.add(client);
          }
          done(err, ok);
        };
        if (h.hooks.authenticate) h.hooks.authenticate(client, username, password, admitted);
        else admitted(null, true);
      },
      authorizeSubscribe: (client, sub, cb) => {
        const h = owned(client);
        if (!h?.hooks.authorizeSubscribe) return cb(null, null);
        h.hooks.authorizeSubscribe(client, sub, cb);
      },
      authorizePublish: (client, packet, cb) => {
        const h = owned(client);
        if (!h?.hooks.authorizePublish) return cb(new Error("no service on this port takes that publish"));
        h.hooks.authorizePublish(client, packet, cb);
      },
      // A message reaches a session only when the session's own dialect lets it.
      authorizeForward: (client, packet) => {
        const h = owned(client);
        return h?.hooks.authorizeForward ? h.hooks.authorizeForward(client, packet) : null;
      },
    },
  });
  void hub.broker.then(
    (b) =>
      (started = b).aedes.on("clientDisconnect", (client: Client) => {
        const h = hub.owners.get(client);
        if (h) hub.sessions.get(h)?.delete(client);
      }),
    () => undefined,
  );
  return hub;
}

/**
 * Attaches one dialect's topics to the broker on `settings.host:settings.port`, starting it
 * when none runs there. Rejects with a CONFIG ProvisioningError when the port is served
 * with other settings or already by the same dialect, and with the listen error when the
 * port cannot be bound.
 */
export async function attachMqtt(
  settings: MqttListenerSettings,
  handler: MqttDialectHandler,
): Promise<MqttAttachment> {
  const key = `${settings.host}|${settings.port}`;
  await stopping.get(key);
  let hub = settings.port === 0 ? undefined : hubs.get(key);
  if (hub) {
    const names = hub.handlers.map((h) => h.name).join(", ");
    if (hub.handlers.some((h) => h.name === handler.name))
      throw finalError("CONFIG", `MQTT port ${settings.port} is already served by ${handler.name}`);
    const why = conflict(hub.settings, settings);
    if (why)
      throw finalError(
        "CONFIG",
        `MQTT port ${settings.port} is shared with ${names} on other settings: ${why}`,
      );
  } else {
    hub = startHub(key, settings);
    if (settings.port !== 0) hubs.set(key, hub);
  }
  const h = hub;
  h.handlers.push(handler);
  let broker: EmbeddedBroker;
  try {
    broker = await h.broker;
  } catch (err) {
    if (hubs.get(key) === h) hubs.delete(key);
    throw err;
  }
  if (settings.port === 0) {
    // An ephemeral port is this attach's own; others may now find it by its number.
    const real = `${settings.host}|${broker.port}`;
    h.key = real;
    h.settings = { ...settings, port: broker.port };
    hubs.set(real, h);
  }
  let detached: Promise<void> | undefined;
  return {
    broker,
    detach: () =>
      (detached ??= (async () => {
        const i = h.handlers.indexOf(handler);
        if (i >= 0) h.handlers.splice(i, 1);
        const mine = h.sessions.get(handler);
        h.sessions.delete(handler);
        if (h.handlers.length > 0) {
          // Nobody answers these sessions any more; the other dialects' stay.
          for (const client of mine ?? []) client.close();
          return;
        }
        if (hubs.get(h.key) === h) hubs.delete(h.key);
        const closed = broker.close();
        stopping.set(h.key, closed);
        try {
          await closed;
        } finally {
          if (stopping.get(h.key) === closed) stopping.delete(h.key);
        }
      })()),
  };
}
