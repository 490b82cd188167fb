import type { IClientOptions, MqttClient } from "mqtt";
import { mqttConnect } from "../../transports/mqtt-connect";
import { randomAlphanumeric } from "../../util/secrets";
import { finalError, transientError } from "../../model/errors";
import { AbortedError } from "../../retry/run";
import { guardIncomingPackets } from "../../transports/mqtt-packet-guard";
import { classifyNetworkFailure } from "../../transports/network-failure";
import { MAX_RESPONSE_BYTES, PROVISION_USERNAME, TOPIC_REQUEST, TOPIC_RESPONSE } from "./wire";
import { describeUri, tlsSocketOptions, type TbExchange, type TbExchangeOptions } from "./client-common";

/** CONNACK codes that mean "you may not": retrying with the same settings cannot help. */
const REFUSING_CONNACK = new Set([2, 4, 5, 133, 134, 135, 138, 140]);
/**
 * CONNACK codes that mean "not now": MQTT 3.1.1 return code 3 (server unavailable), MQTT 5
 * reason codes 0x88 (server unavailable), 0x89 (server busy), 0x97 (quota exceeded). A
 * throttling server answers so; the retry policy tries again later.
 */
const BUSY_CONNACK = new Set([3, 0x88, 0x89, 0x97]);

/** The largest MQTT packet read from the server: the largest answer, its topic and header. */
export const MAX_PACKET_BYTES = MAX_RESPONSE_BYTES + 64 * 1024;

/**
 * One provisioning exchange over MQTT, on its own connection: ThingsBoard answers on the
 * session that asked, so concurrent devices never share one. Subscribes first and
 * publishes only after the SUBACK (ThingsBoard's reference self-provisioning script sleeps
 * 100 ms instead and can miss the answer).
 */
export const mqttExchange: TbExchange = (uri: URL, body: string, opts: TbExchangeOptions) =>
  new Promise<Buffer>((resolve, reject) => {
    const where = describeUri(uri);
    const secure = uri.protocol === "mqtts:";
    if (opts.signal?.aborted) return reject(new AbortedError());
    const options: IClientOptions = {
      protocol: secure ? "mqtts" : "mqtt",
      host: uri.hostname.replace(/^\[|\]$/g, ""),
      port: Number(uri.port || (secure ? 8883 : 1883)),
      protocolVersion: 4,
      username: PROVISION_USERNAME,
      clientId: `provision-${randomAlphanumeric(12)}`,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: opts.timeoutMs,
      queueQoSZero: false,
      resubscribe: false,
    };
    if (secure) Object.assign(options, tlsSocketOptions(opts.tls));
    let settled = false;
    let client: MqttClient | undefined;
    const finish = (err: Error | undefined, answer?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      client?.removeAllListeners("message");
      client?.end(true);
      if (err) reject(err);
      else resolve(answer as Buffer);
    };
    const onAbort = () => finish(new AbortedError());
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(
      () => finish(transientError("TIMEOUT", `no answer from ${where} within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    try {
      client = mqttConnect(options);
    } catch (err) {
      return finish(finalError("CONFIG", `cannot connect to ${where}: ${(err as Error).message}`));
    }
    // A server announcing a packet past the answer's limit is dropped at its header, before
    // mqtt.js buffers it (up to 256 MB otherwise).
    guardIncomingPackets(client.stream, MAX_PACKET_BYTES, where, finish);
    client.on("error", (err: Error & { code?: unknown }) => {
      if (typeof err.code === "number") {
        const status = `CONNACK ${err.code}`;
        const msg = `${where} refused the connection (${status})`;
        if (REFUSING_CONNACK.has(err.code)) return finish(finalError("REFUSED", msg, { status }));
        if (BUSY_CONNACK.has(err.code)) {
          return finish(transientError("BUSY", `${where} is busy, try later (${status})`, { status }));
        }
        return finish(transientError("CONNECT", msg, { status }));
      }
      finish(classifyNetworkFailure(err, where));
    });
    client.on("close", () =>
      finish(transientError("CONNECT", `${where} closed the connection before answering`)),
    );
    client.on("message", (topic, payload) => {
      if (topic === TOPIC_RESPONSE) finish(undefined, payload);
    });
    client.once("connect", () => {
      client?.subscribe(TOPIC_RESPONSE, { qos: 1 }, (err, granted) => {
        if (settled) return;
        if (err) return finish(classifyNetworkFailure(err, where));
        if (!granted || granted.length === 0 || granted[0].qos === 128) {
          return finish(finalError("REFUSED", `${where} refused the subscription to ${TOPIC_RESPONSE}`));
        }
        opts.onRequesting?.();
        client?.publish(TOPIC_REQUEST, body, { qos: 1 }, (pubErr) => {
          if (pubErr && !settled) {
            finish(finalError("REFUSED", `${where} refused the request: ${pubErr.message}`));
          }
        });
      });
    });
  });
