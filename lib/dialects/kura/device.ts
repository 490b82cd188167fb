/**
 * The device side of Everyware-style provisioning, one attempt: the four steps of
 * Everyware Cloud's "Device Provisioning MQTT Protocol" (connect to the provision broker,
 * send the provision message, receive the answer, disconnect), over MQTT 3.1.1 as Kura's
 * transport speaks it, in the exchange ./namespace.ts defines. The caller (a DeviceDialect,
 * its retry policy and store) reconnects to the account broker with the result.
 */
import { randomBytes, X509Certificate } from "node:crypto";
import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";
import type { ConnectionOptions } from "node:tls";
import type { IClientOptions, MqttClient } from "mqtt";
import { mqttConnect } from "../../transports/mqtt-connect";
import { finalError, ProvisioningError, transientError } from "../../model/errors";
import type { Configuration, Credentials, Device } from "../../model/result";
import { verifyChain } from "../../pki/verify";
import { AbortedError } from "../../retry/run";
import { classifyNetworkFailure } from "../../transports/network-failure";
import {
  buildProvisionRequest,
  DEFAULT_TOPICS,
  METRIC,
  newRequestId,
  parseProvisionAnswer,
  PROVISION_APP_ID,
  topicFor,
  topicsError,
  topicValueError,
  type KuraApplication,
  type KuraDeviceIdentity,
  type KuraTopics,
} from "./namespace";
import { decodeKuraPayload, DEFAULT_MAX_BYTES, encodeKuraPayload, KuraPayloadError } from "./payload";
import { guardIncomingPackets } from "../../transports/mqtt-packet-guard";
import { tlsSocketOptions } from "../../transports/tls-client";

export interface KuraDeviceSettings {
  /** The provision broker: mqtts://host (8883 by default) or mqtt://host (1883); ssl:// and tcp:// as Kura writes them. */
  brokerUrl: string;
  /** The provision account (account-name). */
  accountName: string;
  clientId: string;
  username: string;
  password: string;
  activationKey?: string;
  identity?: KuraDeviceIdentity;
  /** ca-authentication: the received chain must end in one of `trustedCas`. */
  caAuthentication?: boolean;
  /** PEMs of the roots the device trusts (a tls-config's CA). */
  trustedCas?: string[];
  topics?: KuraTopics;
  appId?: string;
}

export interface KuraAttemptOptions {
  /** Time for the whole attempt: connect, request, answer. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** TLS options for an mqtts:// provision broker; verification on unless explicitly false. */
  tls?: ConnectionOptions;
  /** Told when the connection is up and the provision message goes out. */
  onRequesting?: () => void;
  /** Largest answer read, in bytes (default 1 MiB), as sent and inflated. */
  maxAnswerBytes?: number;
  /** The clock of ca-authentication and obtainedAt (tests). */
  now?: () => Date;
}

/**
 * The neutral result's shape (lib/model/result.ts ProvisioningResult) with this dialect's
 * words: the account broker's MQTT credentials, its URL in configuration.servers, the
 * received chain as the CAs to trust, the applications in configuration.applications.
 */
export interface KuraProvisioningResult {
  dialect: "kura";
  endpoint: string;
  device: Device;
  proof: "provision-request";
  credentials: Credentials;
  configuration: Configuration & { accountName: string; applications: KuraApplication[] };
  obtainedAt: string;
  reused: false;
}

/**
 * The client id Kura and Everyware default to: the MAC address of the main network
 * interface without colons, upper case (ESF's provisioning settings: "the MAC address of
 * the main network card of the device without columns"). The main interface is `preferred`
 * when it has a MAC, else the first non-loopback one with an IPv4 address, else the first
 * with any address; undefined when there is none (a container without a NIC).
 */
export function defaultKuraClientId(
  preferred?: string,
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): string | undefined {
  const usable = Object.entries(interfaces).filter(
    (e): e is [string, NetworkInterfaceInfo[]] =>
      Array.isArray(e[1]) && e[1].some((a) => !a.internal && a.mac !== "00:00:00:00:00:00"),
  );
  const pick =
    usable.find(([name]) => name === preferred) ??
    usable.find(([, addrs]) => addrs.some((a) => a.family === "IPv4")) ??
    usable[0];
  const mac = pick?.[1].find((a) => !a.internal && a.mac !== "00:00:00:00:00:00")?.mac;
  return mac?.replace(/:/g, "").toUpperCase();
}

/** The user name Everyware defaults to: the client id, then a dash and the serial number when one is set. */
export function defaultKuraUsername(clientId: string, serialNumber?: string): string {
  return serialNumber ? `${clientId}-${serialNumber}` : clientId;
}

/** What a refused CONNECT means at a provision broker, in Everyware's terms. */
export const DENIED_AT_CONNECT =
  "no provision request exists for this device, or wrong user name or password";

/**
 * MQTT 3.1.1 CONNACK return codes (OASIS MQTT 3.1.1, 3.2.2.3): 2 identifier rejected,
 * 4 bad user name or password, 5 not authorized: the provision broker knows no request for
 * these credentials; 3 server unavailable: try later.
 */
const DENYING_CONNACK = new Set([2, 4, 5]);
const BUSY_CONNACK = 3;

/** Room for the topic and the header of a publish around the largest answer. */
const PACKET_OVERHEAD = 64 * 1024;

export interface Target {
  url: URL;
  secure: boolean;
  port: number;
  /** Scheme, host and port, as a person reads it; never credentials. */
  where: string;
}

/** The provision broker a URL names (mqtts 8883 by default, mqtt 1883); throws CONFIG. */
export function provisionBrokerOf(brokerUrl: string): Target {
  let url: URL;
  try {
    url = new URL(brokerUrl);
  } catch {
    throw finalError("CONFIG", "the provision broker URL does not parse");
  }
  const scheme = url.protocol;
  const secure = scheme === "mqtts:" || scheme === "ssl:";
  if (!secure && scheme !== "mqtt:" && scheme !== "tcp:")
    throw finalError("CONFIG", `the provision broker URL's scheme ${scheme} is not mqtts, mqtt, ssl or tcp`);
  if (url.hostname === "") throw finalError("CONFIG", "the provision broker URL has no host");
  if (url.username !== "" || url.password !== "")
    throw finalError(
      "CONFIG",
      "the provision broker URL holds credentials: give them as user name and password",
    );
  const port = Number(url.port || (secure ? 8883 : 1883));
  return { url, secure, port, where: `${secure ? "mqtts" : "mqtt"}://${url.hostname}:${port}` };
}

/** Checks the settings before any byte is sent; throws CONFIG. Returns the broker and the topics. */
export function checkKuraDeviceSettings(s: KuraDeviceSettings): {
  target: Target;
  topics: KuraTopics;
  appId: string;
} {
  const target = provisionBrokerOf(s.brokerUrl);
  const topics = s.topics ?? DEFAULT_TOPICS;
  const appId = s.appId ?? PROVISION_APP_ID;
  const err =
    topicValueError(s.accountName, "account name") ??
    topicValueError(s.clientId, "client id") ??
    topicValueError(appId, "app id") ??
    topicsError(topics) ??
    (typeof s.username !== "string" || s.username === "" ? "the user name is empty" : undefined) ??
    (typeof s.password !== "string" || s.password === "" ? "the password is empty" : undefined) ??
    (s.caAuthentication && !(s.trustedCas && s.trustedCas.length > 0)
      ? "ca-authentication is on but no CA certificate is given to trust"
      : undefined);
  if (err) throw finalError("CONFIG", err);
  return { target, topics, appId };
}

function trustedOf(pems: string[]): X509Certificate[] {
  return pems.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch {
      throw finalError("CONFIG", `the trusted CA certificate ${i + 1} does not parse`);
    }
  });
}

/** ca-authentication: the chain must end in a trusted root; a final TLS error says why not. */
function checkChain(chain: string[], trustedPems: string[], at: Date): void {
  const trusted = trustedOf(trustedPems);
  const refuse = (reason: string, status: string) =>
    finalError("TLS", `ca-authentication refused the answer: ${reason}`, { status });
  if (chain.length === 0) throw refuse("it holds no certificate chain", "CHAIN_MISSING");
  let presented: X509Certificate[];
  try {
    presented = chain.map((p) => new X509Certificate(p));
  } catch {
    throw refuse("a certificate of its chain does not parse", "CERT_INVALID");
  }
  const r = verifyChain(presented, trusted, { at });
  if (!r.ok) throw refuse(`the certificate chain does not end in a trusted root (${r.reason})`, r.code);
}

/**
 * One provisioning attempt. Resolves with the result once the answer is checked and the
 * completion is published; rejects with a ProvisioningError whose `final` says whether to
 * retry (AbortedError when the signal fires).
 */
export function provisionKuraDevice(
  s: KuraDeviceSettings,
  opts: KuraAttemptOptions,
): Promise<KuraProvisioningResult> {
  return new Promise<KuraProvisioningResult>((resolve, reject) => {
    let checked: ReturnType<typeof checkKuraDeviceSettings>;
    let trusted: string[] = [];
    try {
      checked = checkKuraDeviceSettings(s);
      if (s.caAuthentication) {
        trusted = s.trustedCas ?? [];
        trustedOf(trusted);
      }
    } catch (err) {
      return reject(err);
    }
    if (opts.signal?.aborted) return reject(new AbortedError());
    const { target, topics, appId } = checked;
    const now = opts.now ?? (() => new Date());
    const requestId = newRequestId(randomBytes);
    const values = { account: s.accountName, clientId: s.clientId, appId, requestId };
    const replyTopic = topicFor(topics.reply, values);
    const requestTopic = topicFor(topics.request, values);
    const completedTopic = topicFor(topics.completed, values);
    const where = target.where;
    const maxAnswer = opts.maxAnswerBytes ?? DEFAULT_MAX_BYTES;

    const options: IClientOptions = {
      protocol: target.secure ? "mqtts" : "mqtt",
      host: target.url.hostname.replace(/^\[|\]$/g, ""),
      port: target.port,
      protocolVersion: 4,
      clientId: s.clientId,
      username: s.username,
      password: s.password,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: opts.timeoutMs,
      queueQoSZero: false,
      resubscribe: false,
    };
    if (target.secure) {
      Object.assign(options, tlsSocketOptions(opts.tls));
    }

    let settled = false;
    let answered = false;
    /** The result, once the answer is checked: the connection may go while the completion is out. */
    let held: KuraProvisioningResult | undefined;
    let closed = false;
    let client: MqttClient | undefined;
    const finish = (err: Error | undefined, result?: KuraProvisioningResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      client?.removeAllListeners("message");
      // Step 4, disconnect: after success a DISCONNECT (the completion is acknowledged by
      // then), and the attempt ends when the socket has; otherwise the socket is dropped.
      if (err) {
        client?.end(true);
        reject(err);
      } else if (client && !closed) client.end(false, {}, () => resolve(result as KuraProvisioningResult));
      else resolve(result as KuraProvisioningResult);
    };
    const onAbort = () => finish(new AbortedError());
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(
      () => finish(transientError("TIMEOUT", `no answer from ${where} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );

    const onAnswer = (payload: Buffer) => {
      let answer: ReturnType<typeof parseProvisionAnswer>;
      try {
        answer = parseProvisionAnswer(decodeKuraPayload(payload, { maxBytes: maxAnswer }));
      } catch (err) {
        if (err instanceof KuraPayloadError)
          return finish(
            finalError(
              err.tooLarge ? "TOO_LARGE" : "INVALID_ANSWER",
              `the answer from ${where}: ${err.message}`,
            ),
          );
        return finish(err as ProvisioningError);
      }
      const at = now();
      try {
        if (s.caAuthentication) checkChain(answer.certificateChain, trusted, at);
        if (!answer.configuration)
          throw finalError("INVALID_ANSWER", `the answer from ${where} holds no account configuration`);
      } catch (err) {
        return finish(err as Error);
      }
      const c = answer.configuration;
      const result: KuraProvisioningResult = {
        dialect: "kura",
        endpoint: where,
        device: { name: s.clientId, id: s.clientId },
        proof: "provision-request",
        credentials: {
          type: "MQTT_BASIC",
          clientId: c.clientId || s.clientId,
          username: c.username,
          password: c.password,
          ...(answer.certificateChain.length > 0 ? { caCertificates: answer.certificateChain } : {}),
        },
        configuration: {
          servers: [{ uri: c.brokerUrl }],
          accountName: c.accountName,
          applications: answer.applications,
        },
        obtainedAt: at.toISOString(),
        reused: false,
      };
      // The service may count the request completed once we hold the answer.
      const done = encodeKuraPayload({
        timestamp: at.getTime(),
        metrics: [
          { name: METRIC.requestId, type: "STRING", value: requestId },
          { name: METRIC.requesterClientId, type: "STRING", value: s.clientId },
        ],
      });
      held = result;
      client?.publish(completedTopic, done, { qos: 1 }, () => finish(undefined, result));
    };

    try {
      client = mqttConnect(options);
    } catch (err) {
      return finish(finalError("CONFIG", `cannot connect to ${where}: ${(err as Error).message}`));
    }
    const maxPacket = maxAnswer + PACKET_OVERHEAD;
    guardIncomingPackets(client.stream, maxPacket, where, finish);
    client.on("error", (err: Error & { code?: unknown }) => {
      if (typeof err.code === "number") {
        const status = `CONNACK ${err.code}`;
        if (DENYING_CONNACK.has(err.code))
          return finish(finalError("DENIED", `${where}: ${DENIED_AT_CONNECT} (${status})`, { status }));
        if (err.code === BUSY_CONNACK)
          return finish(transientError("BUSY", `${where} is unavailable, try later (${status})`, { status }));
        return finish(transientError("CONNECT", `${where} refused the connection (${status})`, { status }));
      }
      finish(classifyNetworkFailure(err, where));
    });
    client.on("close", () => {
      closed = true;
      if (held) finish(undefined, held);
      else if (!answered)
        finish(transientError("CONNECT", `${where} closed the connection before answering`));
    });
    client.on("message", (topic, payload) => {
      if (topic !== replyTopic || answered || settled) return;
      answered = true;
      onAnswer(payload);
    });
    client.once("connect", () => {
      // Step 2 only once the reply topic is ours: an answer cannot come before the SUBACK.
      client?.subscribe(replyTopic, { qos: 1 }, (err, granted) => {
        if (settled) return;
        if (err) return finish(classifyNetworkFailure(err, where));
        if (!granted || granted.length === 0 || granted[0].qos === 128)
          return finish(finalError("REFUSED", `${where} refused the subscription to the reply topic`));
        opts.onRequesting?.();
        const body = encodeKuraPayload(
          buildProvisionRequest(
            {
              requestId,
              requesterClientId: s.clientId,
              activationKey: s.activationKey,
              identity: s.identity ?? {},
            },
            now().getTime(),
          ),
        );
        client?.publish(requestTopic, body, { qos: 1 }, (pubErr) => {
          if (pubErr && !settled)
            finish(finalError("REFUSED", `${where} refused the provision message: ${pubErr.message}`));
        });
      });
    });
  });
}
