/**
 * ThingsBoard provisioning over MQTT through the embedded broker: a session whose user
 * name (or client id) is `provision` may publish only to /provision/request and subscribe
 * only to /provision/response; everybody else is refused at CONNECT, since this broker
 * only provisions. Each answer is written to the asking client alone (never routed
 * through the topic tree), so devices waiting at the same time never see each other's
 * credentials. The session is closed some time after its answer, as ThingsBoard does.
 *
 * A session has one job, so its life is bounded whatever keepalive it asks for (see the
 * broker's limits). Answers go out in the order the requests came; a request past the
 * session's allowance is answered FAILURE, and the session is closed once every answer is
 * flushed, so pipelined requests are never lost without an answer.
 */

import type { AuthenticateError, Client, PublishPacket } from "aedes";
import type { TlsOptions } from "node:tls";
import {
  DEFAULT_CONNECTION_LIMITS,
  type ConnectionLimits,
  type CutReason,
  type EmbeddedBroker,
} from "../../transports/embedded-broker";
import { attachMqtt } from "../../transports/mqtt-listener";
import type { RateLimiter } from "../../service/rate-limit";
import type { TbProvisioningService } from "./server";
import {
  encodeResponse,
  FAILURE_RESPONSE,
  MAX_REQUEST_BYTES,
  PROVISION_USERNAME,
  TOPIC_REQUEST,
  TOPIC_RESPONSE,
} from "./wire";

/** Session limits for ThingsBoard devices: they ask at once and leave after the answer. */
export const TB_MQTT_SESSION_DEFAULTS = Object.freeze({
  /** ThingsBoard closes a provisioning session 60 s after answering. */
  closeAfterMs: 60000,
  maxRequestsPerSession: 3,
  maxSessions: DEFAULT_CONNECTION_LIMITS.maxConnections,
  /** Enough for a gateway onboarding children 50 at a time, well short of all the slots. */
  maxSessionsPerRemote: DEFAULT_CONNECTION_LIMITS.maxPerRemote,
  /** A device publishes its request right after its SUBACK. */
  firstRequestMs: DEFAULT_CONNECTION_LIMITS.firstRequestMs,
  /** Covers the first request, a flow's decision and the 60 s ThingsBoard waits after answering. */
  sessionLifetimeMs: DEFAULT_CONNECTION_LIMITS.maxLifetimeMs,
});

export interface TbMqttServerOptions {
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** Serve MQTT over TLS with this key and certificate. */
  tls?: TlsOptions;
  /** Every connection begins with a PROXY protocol header (behind HAProxy send-proxy-v2). */
  proxyProtocol?: boolean;
  /** Close a session this long after answering it (ThingsBoard: 60 s). */
  closeAfterMs?: number;
  /** Requests one session may make; later ones are answered FAILURE, then it is closed (default 3). */
  maxRequestsPerSession?: number;
  /** Bytes one session may send in its life (default 4 x MAX_REQUEST_BYTES + 4 KiB). */
  maxSessionBytes?: number;
  /** Most simultaneous sessions (default 1000). */
  maxSessions?: number;
  /** Most simultaneous sessions from one remote address (default 100). */
  maxSessionsPerRemote?: number;
  /** Time from CONNECT to the first request before the session is cut, ms (default 10 s). */
  firstRequestMs?: number;
  /** Longest life of a session, ms, whatever its keepalive (default 120 s). */
  sessionLifetimeMs?: number;
  /** Time from TCP connection to CONNECT, ms (default 10 s). */
  connectTimeoutMs?: number;
  /** Silence after which a session may lose its slot to a newcomer, ms (default 2 s). */
  evictIdleAfterMs?: number;
  /** New connections per remote address, counted at CONNECT; over it: CONNACK 3 (server unavailable). */
  connectLimiter?: RateLimiter;
  /**
   * The limiter the service was given. A session takes its token at CONNECT (over the rate:
   * CONNACK 3, or 0x89 for MQTT 5), and its first request spends that same token, so a
   * device let in is not throttled half way through.
   */
  serviceLimiter?: RateLimiter;
  /** Told (without secrets) when a session is cut for breaking the rules. */
  onViolation?: (what: string, remote: string | undefined) => void;
}

export interface TbMqttServer {
  host: string;
  port: number;
  tls: boolean;
  /** Sessions connected now. */
  sessions(): number;
  /** Connections holding a slot now, CONNECT received or not. */
  connections(): number;
  /** Answered sessions held open for "close after", their device still connected. */
  waitingToClose(): number;
  close(): Promise<void>;
}

interface Session {
  requests: number;
  qos: 0 | 1;
  /** Answers are written in request order, each after the one before. */
  tail: Promise<void>;
  /** Past its allowance: closed once every answer is flushed. */
  closing: boolean;
  /** The "close after" timer, cleared when the device leaves first. */
  closeTimer?: NodeJS.Timeout;
}

const FAILURE_TEXT = encodeResponse(FAILURE_RESPONSE);

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startTbMqttServer(
  service: TbProvisioningService,
  opts: TbMqttServerOptions,
): Promise<TbMqttServer> {
  const d = TB_MQTT_SESSION_DEFAULTS;
  const closeAfterMs = opts.closeAfterMs ?? d.closeAfterMs;
  const maxRequests = opts.maxRequestsPerSession ?? d.maxRequestsPerSession;
  const sessions = new WeakMap<Client, Session>();
  const closeTimers = new Set<NodeJS.Timeout>();
  const violation = (what: string, client: Client | null) =>
    opts.onViolation?.(what, client ? broker.remoteOf(client) : undefined);

  /** Writes one answer to this client alone; resolves once it is handed to the socket. */
  const write = (client: Client, session: Session, text: string) =>
    new Promise<void>((resolve) => {
      if (client.closed) return resolve();
      const packet: PublishPacket = {
        cmd: "publish",
        topic: TOPIC_RESPONSE,
        payload: Buffer.from(text),
        qos: session.qos,
        dup: false,
        retain: false,
      };
      // Straight to this client: the topic tree is never asked who else listens.
      client.publish(packet, () => resolve());
    });

  const queue = (client: Client, session: Session, answer: Promise<string | null>, counted: boolean) => {
    const mine = session.tail
      .then(() => answer)
      .then(
        (text) => {
          if (text !== null) return write(client, session, text);
          // No verdict to give (the registry is unavailable): the session is closed with
          // nothing said, which every device treats as "try again", unlike FAILURE.
          session.closing = true;
        },
        () => write(client, session, FAILURE_TEXT),
      );
    session.tail = mine;
    void mine.then(() => {
      if (counted) broker.endRequest(client);
      if (client.closed) return;
      if (session.closing) {
        // Only after the last answer queued: the ones after it are still to be written.
        if (session.tail === mine) client.close();
        return;
      }
      const timer = setTimeout(() => {
        closeTimers.delete(timer);
        session.closeTimer = undefined;
        client.close();
      }, closeAfterMs);
      timer.unref();
      closeTimers.add(timer);
      session.closeTimer = timer;
    });
  };

  const cutMessages: Record<CutReason, string> = {
    evicted: "idle session cut to make room",
    "first-request deadline": "session cut: no request in time",
    lifetime: "session cut: lifetime over",
    throttled: "connection refused: over the rate limit",
    full: "connection refused: every session slot is busy",
    "proxy header": "connection refused: no valid PROXY protocol header",
  };

  // The hooks below only run for connections, which arrive after this assignment. The
  // port's broker is shared with any other dialect attached to it (mqtt-listener.ts);
  // sessions whose user name or client id is `provision` are ThingsBoard's.
  const limits: ConnectionLimits = {
    maxConnections: opts.maxSessions ?? d.maxSessions,
    maxPerRemote: opts.maxSessionsPerRemote ?? d.maxSessionsPerRemote,
    firstRequestMs: opts.firstRequestMs ?? d.firstRequestMs,
    maxLifetimeMs: opts.sessionLifetimeMs ?? d.sessionLifetimeMs,
  };
  if (opts.connectTimeoutMs !== undefined) limits.connectTimeoutMs = opts.connectTimeoutMs;
  if (opts.evictIdleAfterMs !== undefined) limits.evictIdleAfterMs = opts.evictIdleAfterMs;
  const attachment = await attachMqtt(
    {
      host: opts.host ?? "127.0.0.1",
      port: opts.port,
      tls: opts.tls,
      maxConnectionBytes: opts.maxSessionBytes ?? 4 * MAX_REQUEST_BYTES + 4096,
      limits,
      proxyProtocol: opts.proxyProtocol,
    },
    {
      name: "thingsboard",
      claims: (c) => c.username === PROVISION_USERNAME || c.clientId === PROVISION_USERNAME,
      admit: (remote) =>
        (!opts.connectLimiter || opts.connectLimiter.take(remote)) &&
        (!opts.serviceLimiter || opts.serviceLimiter.take(remote)),
      onCut: (reason, remote, detail) =>
        opts.onViolation?.(detail ? `${cutMessages[reason]} (${detail})` : cutMessages[reason], remote),
      hooks: {
        preConnect: (_client, packet, cb) => {
          // A will is a publish the session never asked permission for: it could forge a
          // /provision/response to every waiting device.
          packet.will = undefined;
          cb(null, true);
        },
        authenticate: (client, username, _password, done) => {
          if (username === PROVISION_USERNAME || client.id === PROVISION_USERNAME) {
            sessions.set(client, { requests: 0, qos: 0, tail: Promise.resolve(), closing: false });
            done(null, true);
          } else {
            done(refusal("this broker only serves provisioning sessions", 5), false);
          }
        },
        authorizeSubscribe: (client, sub, cb) => {
          const session = sessions.get(client);
          if (!session || sub.topic !== TOPIC_RESPONSE) {
            violation(`subscribe refused`, client);
            cb(null, null);
            return;
          }
          session.qos = sub.qos >= 1 ? 1 : 0;
          cb(null, { ...sub, qos: session.qos });
        },
        authorizePublish: (client, packet, cb) => {
          const session = client ? sessions.get(client) : undefined;
          if (!client || !session || packet.topic !== TOPIC_REQUEST) {
            violation("publish to a forbidden topic", client);
            cb(new Error("a provisioning session may publish only to " + TOPIC_REQUEST));
            return;
          }
          session.requests++;
          // Nobody may subscribe to the request topic, so letting aedes route it costs nothing.
          packet.retain = false;
          cb(null);
          if (session.requests > maxRequests) {
            // Refusing the publish would make aedes drop the connection, and with it the
            // answers still on their way: answer FAILURE instead and close after the last one.
            if (session.requests === maxRequests + 1) violation("too many requests in one session", client);
            session.closing = true;
            queue(client, session, Promise.resolve(FAILURE_TEXT), false);
            return;
          }
          if (session.requests === maxRequests) session.closing = true;
          broker.beginRequest(client);
          const remote = broker.remoteOf(client);
          // The CONNECT paid for the first request; handle() takes the token back at once.
          if (session.requests === 1) opts.serviceLimiter?.refund(remote);
          const body = packet.payload;
          const answer = service
            .handle(Buffer.isBuffer(body) ? body : Buffer.from(body), { transport: "mqtt", remote })
            .then(({ response, unavailable }) => (unavailable ? null : encodeResponse(response)));
          queue(client, session, answer, true);
        },
        // Nothing published by a client can reach a provisioning session.
        authorizeForward: (_client, packet) => (packet.topic === TOPIC_RESPONSE ? packet : null),
      },
    },
  );
  const broker: EmbeddedBroker = attachment.broker;
  // Most devices leave as soon as they have their answer: their timer goes with them, or
  // it would hold the session, its socket and its buffers for the whole "close after".
  const onDisconnect = (client: Client) => {
    const session = sessions.get(client);
    if (session?.closeTimer === undefined) return;
    clearTimeout(session.closeTimer);
    closeTimers.delete(session.closeTimer);
    session.closeTimer = undefined;
  };
  broker.aedes.on("clientDisconnect", onDisconnect);

  const b = broker;
  return {
    host: b.host,
    port: b.port,
    tls: b.tls,
    sessions: () => b.aedes.connectedClients,
    connections: () => b.connections(),
    waitingToClose: () => closeTimers.size,
    close: async () => {
      for (const t of closeTimers) clearTimeout(t);
      closeTimers.clear();
      broker.aedes.removeListener("clientDisconnect", onDisconnect);
      await attachment.detach();
    },
  };
}
