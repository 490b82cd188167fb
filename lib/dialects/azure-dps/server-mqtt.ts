/**
 * Azure DPS over MQTT ("Device Provisioning Service MQTT support"; Azure/azure-iot-sdk-node
 * provisioning/transport/mqtt/src/mqtt.ts), on the embedded broker over TLS only (Azure:
 * 8883). The session is this dialect's when its user name is
 * `{idScope}/registrations/{registrationId}/api-version=...` for this service's id scope
 * (extra `&ClientVersion=...` fields are fine); at CONNECT the client id must be the
 * registration id, and the password a SAS token for it, or the TLS client certificate an
 * X.509 proof (asked for by TLS, checked here against the enrollments).
 *
 * CONNACK: 4 for a user name or client id that is not DPS's, 5 for a failed proof or an
 * unknown registration (the same answer, as Azure's 401), 3 while locked or throttled.
 * A session may subscribe to `$dps/registrations/res/#` only, and publish only the two
 * requests; each answer goes to the asking session alone, never through the topic tree,
 * and nothing another client publishes reaches a DPS session.
 */
import type { AuthenticateError, Client, PublishPacket } from "aedes";
import type { TLSSocket, TlsOptions } from "node:tls";
import type { RateLimiter } from "../../service/rate-limit";
import {
  DEFAULT_CONNECTION_LIMITS,
  type ConnectionLimits,
  type CutReason,
  type EmbeddedBroker,
} from "../../transports/embedded-broker";
import { attachMqtt } from "../../transports/mqtt-listener";
import { MAX_REQUEST_BYTES, type AzureDpsService, type DpsAnswer, type DpsCaller } from "./server";
import type { Attested } from "./server-enrollments";
import { clientCertificateTls, peerChain } from "./server-x509";
import { parseMqttUserName, parseRequestTopic, RESPONSE_FILTER, responseTopic } from "./wire";

export interface AzureMqttOptions {
  host: string;
  /** 0 picks a free port (Azure: 8883). */
  port: number;
  tls: TlsOptions;
  /** Every connection begins with a PROXY protocol header (behind HAProxy send-proxy-v2). */
  proxyProtocol?: boolean;
  limits?: ConnectionLimits;
  /** Requests (register and polls) one session may send; past it the session is closed (default 200). */
  maxRequestsPerSession?: number;
  /** The service's per-address limiter, charged once per CONNECT (over it: CONNACK 3). */
  serviceLimiter?: RateLimiter;
  onViolation?: (what: string, remote: string | undefined) => void;
}

export interface AzureMqttServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

interface Session {
  who: Attested;
  caller: DpsCaller;
  qos: 0 | 1;
  requests: number;
}

/** Bytes one session may send in its life: a few registrations and many small polls. */
export const AZURE_SESSION_BYTES = 4 * MAX_REQUEST_BYTES + 64 * 1024;

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

export async function startAzureMqttServer(
  service: AzureDpsService,
  opts: AzureMqttOptions,
): Promise<AzureMqttServer> {
  const maxRequests = opts.maxRequestsPerSession ?? 200;
  const sessions = new WeakMap<Client, Session>();
  /** This service's answers: aedes asks authorizeForward even for a packet written to one client. */
  const answers = new WeakSet<Buffer>();
  const violation = (what: string, client: Client | null) =>
    opts.onViolation?.(what, client ? broker.remoteOf(client) : undefined);

  const answer = (client: Client, session: Session, rid: string, a: DpsAnswer) =>
    new Promise<void>((resolve) => {
      if (client.closed) return resolve();
      const payload = Buffer.from(JSON.stringify(a.body), "utf8");
      answers.add(payload);
      const packet: PublishPacket = {
        cmd: "publish",
        topic: responseTopic(a.status, rid, a.retryAfterS),
        payload,
        qos: session.qos,
        dup: false,
        retain: false,
      };
      // Straight to this client: the topic tree is never asked who else listens.
      client.publish(packet, () => resolve());
    });

  const attachment = await attachMqtt(
    {
      host: opts.host,
      port: opts.port,
      tls: clientCertificateTls(opts.tls),
      maxConnectionBytes: AZURE_SESSION_BYTES,
      limits: { ...DEFAULT_CONNECTION_LIMITS, ...(opts.limits ?? {}) },
      proxyProtocol: opts.proxyProtocol,
    },
    {
      name: "azure-dps",
      claims: (c) => parseMqttUserName(c.username ?? "")?.idScope === service.idScope,
      admit: (remote) => !opts.serviceLimiter || opts.serviceLimiter.take(remote),
      onCut: (reason, remote, detail) =>
        opts.onViolation?.(detail ? `${cutMessages[reason]} (${detail})` : cutMessages[reason], remote),
      hooks: {
        preConnect: (_client, packet, cb) => {
          // A will is a publish the session never asked permission for.
          packet.will = undefined;
          cb(null, true);
        },
        authenticate: (client, username, password, done) => {
          const remote = broker.remoteOf(client);
          const u = parseMqttUserName(username ?? "");
          if (!u || u.registrationId !== client.id) {
            service.refusedEarly(
              "mqtt",
              remote,
              "invalid",
              "the client id is not the user name's registration id",
            );
            return done(refusal("bad user name", 4), false);
          }
          const socket = broker.socketOf(client) as TLSSocket | undefined;
          const caller: DpsCaller = {
            transport: "mqtt",
            remote,
            idScope: u.idScope,
            registrationId: u.registrationId,
            token: password === undefined ? undefined : Buffer.from(password).toString("utf8"),
            chain: socket ? peerChain(socket) : [],
          };
          void service.attest(caller).then((v) => {
            if (v.ok) {
              sessions.set(client, { who: v.who, caller, qos: 0, requests: 0 });
              done(null, true);
            } else if (v.answer.status === 401 || v.answer.status === 400)
              done(refusal("not authorized", 5), false);
            else done(refusal("server unavailable", 3), false);
          });
        },
        authorizeSubscribe: (client, sub, cb) => {
          const session = sessions.get(client);
          if (!session || sub.topic !== RESPONSE_FILTER) {
            violation("subscribe refused", client);
            cb(null, null);
            return;
          }
          session.qos = sub.qos >= 1 ? 1 : 0;
          cb(null, { ...sub, qos: session.qos });
        },
        authorizePublish: (client, packet, cb) => {
          const session = client ? sessions.get(client) : undefined;
          const topic = parseRequestTopic(packet.topic);
          if (!client || !session || !topic) {
            violation("publish to a forbidden topic", client);
            cb(new Error("a DPS session may publish only its requests"));
            return;
          }
          packet.retain = false;
          cb(null);
          session.requests++;
          if (session.requests > maxRequests) {
            violation("too many requests in one session", client);
            client.close();
            return;
          }
          const body = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
          broker.beginRequest(client);
          const a =
            topic.kind === "register"
              ? service.register(session.who, session.caller, body)
              : service.status(session.who, topic.operationId);
          // Never rejects: register() and status() answer every failure.
          void a
            .then((done) => answer(client, session, topic.rid, done))
            .then(() => broker.endRequest(client));
        },
        // Nothing published by any client reaches a DPS session: only its own answers.
        authorizeForward: (_client, packet) =>
          Buffer.isBuffer(packet.payload) && answers.has(packet.payload) ? packet : null,
      },
    },
  );
  const broker: EmbeddedBroker = attachment.broker;
  return { host: broker.host, port: broker.port, close: () => attachment.detach() };
}
