/**
 * ThingsBoard provisioning over MQTT through the embedded broker: a session whose user
 * name (or client id) is `provision` may publish only to /provision/request and subscribe
 * only to /provision/response; everybody else is refused at CONNECT, since this broker
 * only provisions. Each answer is written to the asking client alone (never routed
 * through the topic tree), so devices waiting at the same time never see each other's
 * credentials. The session is closed some time after its answer, as ThingsBoard does.
 */

import type { AuthenticateError, Client, PublishPacket } from "aedes";
import type { TlsOptions } from "node:tls";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../transports/embedded-broker";
import type { RateLimiter } from "../../service/rate-limit";
import type { TbProvisioningService } from "./server";
import { encodeResponse, MAX_REQUEST_BYTES, PROVISION_USERNAME, TOPIC_REQUEST, TOPIC_RESPONSE } from "./wire";

export interface TbMqttServerOptions {
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** Serve MQTT over TLS with this key and certificate. */
  tls?: TlsOptions;
  /** Close a session this long after answering it (ThingsBoard: 60 s). */
  closeAfterMs?: number;
  /** Requests one session may make before it is disconnected (default 3). */
  maxRequestsPerSession?: number;
  /** Bytes one session may send in its life (default 4 x MAX_REQUEST_BYTES + 4 KiB). */
  maxSessionBytes?: number;
  /** Most simultaneous sessions (default 1000). */
  maxSessions?: number;
  /** New connections per remote address; over it, the socket is closed unread. */
  connectLimiter?: RateLimiter;
  /** Told (without secrets) when a session is cut for breaking the rules. */
  onViolation?: (what: string, remote: string | undefined) => void;
}

export interface TbMqttServer {
  host: string;
  port: number;
  tls: boolean;
  /** Sessions connected now. */
  sessions(): number;
  close(): Promise<void>;
}

interface Session {
  requests: number;
  qos: 0 | 1;
}

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startTbMqttServer(
  service: TbProvisioningService,
  opts: TbMqttServerOptions,
): Promise<TbMqttServer> {
  const closeAfterMs = opts.closeAfterMs ?? 60000;
  const maxRequests = opts.maxRequestsPerSession ?? 3;
  const sessions = new WeakMap<Client, Session>();
  const closeTimers = new Set<NodeJS.Timeout>();
  const violation = (what: string, client: Client | null) =>
    opts.onViolation?.(what, client ? broker.remoteOf(client) : undefined);

  const answer = (client: Client, session: Session, body: Buffer) => {
    const remote = broker.remoteOf(client);
    void service.handle(body, { transport: "mqtt", remote }).then(({ response }) => {
      if (client.closed) return;
      const packet: PublishPacket = {
        cmd: "publish",
        topic: TOPIC_RESPONSE,
        payload: Buffer.from(encodeResponse(response)),
        qos: session.qos,
        dup: false,
        retain: false,
      };
      // Straight to this client: the topic tree is never asked who else listens.
      client.publish(packet, () => undefined);
      const timer = setTimeout(() => {
        closeTimers.delete(timer);
        client.close();
      }, closeAfterMs);
      timer.unref();
      closeTimers.add(timer);
    });
  };

  // The hooks below only run for connections, which arrive after this assignment.
  const broker: EmbeddedBroker = await startEmbeddedBroker({
    host: opts.host ?? "127.0.0.1",
    port: opts.port,
    tls: opts.tls,
    maxConnectionBytes: opts.maxSessionBytes ?? 4 * MAX_REQUEST_BYTES + 4096,
    maxConnections: opts.maxSessions,
    admit: (remote) => !opts.connectLimiter || opts.connectLimiter.take(remote),
    hooks: {
      preConnect: (_client, packet, cb) => {
        // A will is a publish the session never asked permission for: it could forge a
        // /provision/response to every waiting device.
        packet.will = undefined;
        cb(null, true);
      },
      authenticate: (client, username, _password, done) => {
        if (username === PROVISION_USERNAME || client.id === PROVISION_USERNAME) {
          sessions.set(client, { requests: 0, qos: 0 });
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
        if (session.requests > maxRequests) {
          violation("too many requests in one session", client);
          cb(new Error("too many requests in one session"));
          return;
        }
        const body = packet.payload;
        // Nobody may subscribe to the request topic, so letting aedes route it costs nothing.
        packet.retain = false;
        cb(null);
        answer(client, session, Buffer.isBuffer(body) ? body : Buffer.from(body));
      },
      // Nothing published by a client can reach a provisioning session.
      authorizeForward: (_client, packet) => (packet.topic === TOPIC_RESPONSE ? packet : null),
    },
  });

  const b = broker;
  return {
    host: b.host,
    port: b.port,
    tls: b.tls,
    sessions: () => b.aedes.connectedClients,
    close: async () => {
      for (const t of closeTimers) clearTimeout(t);
      closeTimers.clear();
      await b.close();
    },
  };
}
