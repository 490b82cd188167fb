/**
 * Azure DPS device side over MQTT: one connection per attempt, as Microsoft's Node SDK
 * opens it (provisioning/transport/mqtt/src/mqtt.ts): MQTT 3.1.1 over TLS, clean
 * session, client id = registration id, user name
 * `{idScope}/registrations/{registrationId}/api-version={v}` (ours without the SDK's
 * `&ClientVersion=`), password the SAS token (none with X.509: the client certificate of
 * the TLS options proves the device); subscribe `$dps/registrations/res/#` at QoS 1, then
 * each step is a QoS 1 publish with a random request id, its answer the response whose
 * `$rid` is that id (others are ignored, as the SDK does).
 */
import { randomUUID } from "node:crypto";
import type { IClientOptions, MqttClient } from "mqtt";
import { mqttConnect } from "../../transports/mqtt-connect";
import { finalError, transientError, type ProvisioningError } from "../../model/errors";
import { AbortedError } from "../../retry/run";
import { guardIncomingPackets } from "../../transports/mqtt-packet-guard";
import { classifyNetworkFailure } from "../../transports/network-failure";
import { tlsSocketOptions } from "../../transports/tls-client";
import type { DpsAnswer, DpsSession, SessionOptions } from "./device-flow";
import type { AzurePrepared } from "./device-prepare";
import {
  mqttUserName,
  operationStatusTopic,
  parseResponseTopic,
  registerTopic,
  RESPONSE_FILTER,
} from "./wire";

/** The Node SDK's keepalive (azure-iot-mqtt-base: 180 s). */
const KEEPALIVE_S = 180;
/** Room for the topic and the header of a publish around the largest answer. */
const PACKET_OVERHEAD = 1024;
/** Status polls carry one space, as the Node SDK sends them. */
const POLL_PAYLOAD = " ";

/**
 * MQTT 3.1.1 CONNACK return codes (OASIS MQTT 3.1.1, 3.2.2.3): 2 identifier rejected,
 * 4 bad user name or password, 5 not authorized (DPS's answer to a wrong token or an
 * unknown registration); 3 server unavailable.
 */
function connackFailure(code: number, where: string): ProvisioningError {
  const status = `CONNACK ${code}`;
  if (code === 2 || code === 4 || code === 5)
    return finalError("DENIED", `${where} refused the connection: not authorized (${status})`, { status });
  if (code === 3) return transientError("BUSY", `${where} is unavailable, try later (${status})`, { status });
  return transientError("CONNECT", `${where} refused the connection (${status})`, { status });
}

export function openMqttSession(p: AzurePrepared, o: SessionOptions): DpsSession {
  const where = p.target.endpoint;
  const options: IClientOptions = {
    protocol: "mqtts",
    host: p.target.hostname,
    port: p.target.port,
    protocolVersion: 4,
    clientId: p.registrationId,
    username: mqttUserName(p.idScope, p.registrationId, p.apiVersion),
    clean: true,
    keepalive: KEEPALIVE_S,
    reconnectPeriod: 0,
    // The attempt's own timer (its signal) ends it sooner, with TIMEOUT.
    connectTimeout: o.timeoutMs + 1000,
    queueQoSZero: false,
    resubscribe: false,
  };
  Object.assign(options, tlsSocketOptions(o.tls));
  if (o.password !== undefined) options.password = o.password;

  const pending = new Map<string, { resolve: (a: DpsAnswer) => void; reject: (e: Error) => void }>();
  let failure: Error | undefined;
  let connected = false;
  let client: MqttClient | undefined;
  let markReady!: () => void;
  let failReady!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });
  // Nobody may be waiting yet when the connection fails.
  ready.catch(() => undefined);

  const fail = (err: Error) => {
    if (failure) return;
    failure = err;
    failReady(err);
    for (const w of pending.values()) w.reject(err);
    pending.clear();
    client?.end(true);
  };
  const onAbort = () => fail(new AbortedError());
  if (o.signal.aborted) onAbort();
  else o.signal.addEventListener("abort", onAbort, { once: true });

  if (!failure) {
    try {
      client = mqttConnect(options);
    } catch (err) {
      fail(finalError("CONFIG", `cannot connect to ${where}: ${(err as Error).message}`));
    }
  }
  if (client) {
    const c = client;
    // Small request after small acknowledgement: without this, Nagle's algorithm holds each
    // request until the service's delayed ACK (about 40 ms a step).
    (c.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
    guardIncomingPackets(c.stream, p.maxAnswerBytes + PACKET_OVERHEAD, where, fail);
    c.on("error", (err: Error & { code?: unknown }) => {
      fail(
        typeof err.code === "number" ? connackFailure(err.code, where) : classifyNetworkFailure(err, where),
      );
    });
    c.on("close", () => fail(transientError("CONNECT", `${where} closed the connection before answering`)));
    c.on("message", (topic, payload) => {
      const t = parseResponseTopic(topic);
      const waiter = t && pending.get(t.rid);
      if (!t || !waiter) return;
      pending.delete(t.rid);
      waiter.resolve({
        status: t.status,
        retryAfterMs: t.retryAfterS === undefined ? undefined : t.retryAfterS * 1000,
        body: payload,
      });
    });
    c.once("connect", () => {
      connected = true;
      c.subscribe(RESPONSE_FILTER, { qos: 1 }, (err, granted) => {
        if (failure) return;
        if (err) return fail(classifyNetworkFailure(err, where));
        if (!granted || granted.length === 0 || granted[0].qos === 128)
          return fail(finalError("REFUSED", `${where} refused the subscription to ${RESPONSE_FILTER}`));
        o.onRequesting?.();
        markReady();
      });
    });
  }

  return {
    async send(step) {
      await ready;
      if (failure) throw failure;
      const rid = randomUUID();
      const topic =
        step.kind === "register" ? registerTopic(rid) : operationStatusTopic(rid, step.operationId);
      const payload = step.kind === "register" ? p.body : POLL_PAYLOAD;
      return new Promise<DpsAnswer>((resolve, reject) => {
        pending.set(rid, { resolve, reject });
        client?.publish(topic, payload, { qos: 1 }, (err) => {
          if (err && !failure) fail(finalError("REFUSED", `${where} refused the request: ${err.message}`));
        });
      });
    },
    close() {
      o.signal.removeEventListener("abort", onAbort);
      const c = client;
      if (!c) return Promise.resolve();
      c.removeAllListeners("message");
      // After success a DISCONNECT; otherwise the socket is dropped.
      const clean = connected && !failure;
      failure ??= new AbortedError();
      for (const w of pending.values()) w.reject(failure);
      pending.clear();
      return new Promise<void>((resolve) => {
        // mqtt.js waits for unacknowledged publishes before a clean DISCONNECT, for ever
        // if the service never acknowledges: the socket is dropped after a second.
        const timer = setTimeout(() => {
          c.stream?.destroy();
          resolve();
        }, 1000);
        c.end(!clean, {}, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
