/**
 * Everyware / Kura provisioning over MQTT through the embedded broker, attached to a port
 * that other dialects may share (lib/transports/mqtt-listener.ts): this dialect claims the
 * sessions whose client id has a provision request; a CONNECT no dialect claims (an
 * unknown client id) is refused by the port with return code 5.
 *
 * A claimed CONNECT is decided by the service (server.ts): return code 4 for a wrong user
 * name or password, 5 for a request that is consumed, expired, failed or not active yet.
 * An accepted session may subscribe only to its own reply topic and publish only its
 * provision message and its confirmation, in its own `$EDC/<account>/<client id>/...`
 * subtree; every answer is written to the asking session alone (never routed through the
 * topic tree), and nothing any client publishes is forwarded to a provisioning session.
 */
import type { AuthenticateError, Client, PublishPacket } from "aedes";
import type { TlsOptions } from "node:tls";
import type { RateLimiter } from "../../service/rate-limit";
import {
  DEFAULT_CONNECTION_LIMITS,
  type ConnectionLimits,
  type CutReason,
  type EmbeddedBroker,
} from "../../transports/embedded-broker";
import { attachMqtt } from "../../transports/mqtt-listener";
import { MAX_PROVISION_MESSAGE_BYTES, type KuraProvisioningService } from "./server";

export interface KuraMqttServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port: number;
  tls?: TlsOptions;
  /** Every connection begins with a PROXY protocol header (behind HAProxy send-proxy-v2). */
  proxyProtocol?: boolean;
  /** Provision messages one session may send (default 3); past it the session is closed. */
  maxRequestsPerSession?: number;
  /**
   * Bytes one session may send in its life. The default is the one ThingsBoard's sessions
   * use, so the two dialects share a port on their defaults (the port's settings must agree).
   */
  maxSessionBytes?: number;
  limits?: ConnectionLimits;
  /** The service's limiter, charged once per CONNECT of a claimed session (over it: CONNACK 3). */
  serviceLimiter?: RateLimiter;
  onViolation?: (what: string, remote: string | undefined) => void;
}

export interface KuraMqttServer {
  host: string;
  port: number;
  tls: boolean;
  close(): Promise<void>;
}

/** The same byte budget per connection as ThingsBoard's default (4 x 64 KiB + 4 KiB). */
export const KURA_SESSION_BYTES = 4 * MAX_PROVISION_MESSAGE_BYTES + 4096;

interface Session {
  requests: number;
  qos: 0 | 1;
}

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

const cutMessages: Record<CutReason, string> = {
  evicted: "idle session cut to make room",
  "first-request deadline": "session cut: no request in time",
  lifetime: "session cut: lifetime over",
  throttled: "connection refused: over the rate limit",
  full: "connection refused: every session slot is busy",
  "proxy header": "connection refused: no valid PROXY protocol header",
};

export async function startKuraMqttServer(
  service: KuraProvisioningService,
  opts: KuraMqttServerOptions,
): Promise<KuraMqttServer> {
  const maxRequests = opts.maxRequestsPerSession ?? 3;
  const sessions = new WeakMap<Client, Session>();
  /**
   * The answers this service writes: aedes asks authorizeForward even for a packet written
   * straight to one client (it wraps it anew, keeping the payload), so the payload marks it.
   */
  const answers = new WeakSet<Buffer>();
  const violation = (what: string, client: Client | null) =>
    opts.onViolation?.(what, client ? broker.remoteOf(client) : undefined);

  const write = (client: Client, session: Session, topic: string, payload: Buffer) =>
    new Promise<void>((resolve) => {
      if (client.closed) return resolve();
      answers.add(payload);
      const packet: PublishPacket = {
        cmd: "publish",
        topic,
        payload,
        qos: session.qos,
        dup: false,
        retain: false,
      };
      // Straight to this client: the topic tree is never asked who else listens.
      client.publish(packet, () => resolve());
    });

  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...(opts.limits ?? {}) };
  const attachment = await attachMqtt(
    {
      host: opts.host ?? "127.0.0.1",
      port: opts.port,
      tls: opts.tls,
      maxConnectionBytes: opts.maxSessionBytes ?? KURA_SESSION_BYTES,
      limits,
      proxyProtocol: opts.proxyProtocol,
    },
    {
      name: "kura",
      claims: (c) => service.claims(c.clientId),
      admit: (remote) => !opts.serviceLimiter || opts.serviceLimiter.take(remote),
      onCut: (reason, remote, detail) =>
        opts.onViolation?.(detail ? `${cutMessages[reason]} (${detail})` : cutMessages[reason], remote),
      // Refused by the port (return code 5): audited here, since client ids are this dialect's.
      onUnclaimed: (c, remote) =>
        service.refusedEarly(
          "mqtt",
          remote,
          "not-found",
          "no provision request for this client id",
          c.clientId,
        ),
      hooks: {
        preConnect: (_client, packet, cb) => {
          // A will is a publish the session never asked permission for.
          packet.will = undefined;
          cb(null, true);
        },
        authenticate: (client, username, password, done) => {
          void service
            .connect({
              clientId: client.id,
              username,
              password,
              remote: broker.remoteOf(client),
              transport: "mqtt",
            })
            .then((v) => {
              if (v.ok) {
                sessions.set(client, { requests: 0, qos: 0 });
                done(null, true);
              } else
                done(
                  refusal(
                    v.returnCode === 4 ? "bad user name or password" : "no active provision request",
                    v.returnCode,
                  ),
                  false,
                );
            });
        },
        authorizeSubscribe: (client, sub, cb) => {
          const session = sessions.get(client);
          if (!session || !ownReplyFilter(service, client.id, sub.topic)) {
            violation("subscribe refused", client);
            cb(null, null);
            return;
          }
          session.qos = sub.qos >= 1 ? 1 : 0;
          cb(null, { ...sub, qos: session.qos });
        },
        authorizePublish: (client, packet, cb) => {
          const session = client ? sessions.get(client) : undefined;
          const kind = client && session ? service.topicOf(client.id, packet.topic) : undefined;
          if (!client || !session || !kind) {
            violation("publish to a forbidden topic", client);
            cb(new Error("a provisioning session may publish only its provision message"));
            return;
          }
          packet.retain = false;
          const body = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
          if (kind === "completed") {
            // Acknowledged once stored: a device that saw its PUBACK left a consumed request.
            void service.completed(client.id, body).then(() => cb(null));
            return;
          }
          cb(null);
          session.requests++;
          if (session.requests > maxRequests) {
            violation("too many requests in one session", client);
            client.close();
            return;
          }
          broker.beginRequest(client);
          void service
            .provision(client.id, body, { transport: "mqtt", remote: broker.remoteOf(client) })
            .then(async (answer) => {
              if (answer) await write(client, session, answer.topic, answer.payload);
              broker.endRequest(client);
              if (!answer && !client.closed) client.close();
            });
        },
        // Nothing published by any client reaches a provisioning session: only its answers.
        authorizeForward: (_client, packet) =>
          Buffer.isBuffer(packet.payload) && answers.has(packet.payload) ? packet : null,
      },
    },
  );
  const broker: EmbeddedBroker = attachment.broker;
  return {
    host: broker.host,
    port: broker.port,
    tls: broker.tls,
    close: () => attachment.detach(),
  };
}

/**
 * Whether a subscription filter stays within the session's own reply topics: the reply
 * template's levels with this session's values, `+` or `#` only where the request id goes.
 */
export function ownReplyFilter(service: KuraProvisioningService, clientId: string, filter: string): boolean {
  const marker = "\u0001";
  let template: string;
  try {
    template = service.replyTopic(clientId, marker);
  } catch {
    return false;
  }
  const want = template.split("/");
  const got = filter.split("/");
  for (let i = 0; i < got.length; i++) {
    // "#" only where the request id goes: the levels before it were checked above.
    if (got[i] === "#") return i === got.length - 1 && i === want.indexOf(marker);
    if (i >= want.length) return false;
    if (want[i] === marker) {
      if (got[i] === "" || (got[i] !== "+" && (got[i].includes("+") || got[i].includes("#")))) return false;
      continue;
    }
    if (got[i] !== want[i]) return false;
  }
  return got.length === want.length;
}
