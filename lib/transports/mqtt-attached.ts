/**
 * Serving through an external broker: one mqtt.js client subscribes to the request topic
 * and publishes each answer. With MQTT 5, a request that carries a Response Topic (and
 * Correlation Data) is answered there; otherwise the answer goes to the shared response
 * topic, which every client subscribed to it can read.
 */

import type { IClientOptions, IPublishPacket, MqttClient } from "mqtt";
import { mqttConnect } from "./mqtt-connect";

export interface AttachedOptions {
  /** mqtt://host:1883 or mqtts://host:8883. */
  url: string;
  /** User name, password, TLS (ca, cert, key, rejectUnauthorized), client id. */
  client?: IClientOptions;
  requestTopic: string;
  /** Where answers go when the request names no MQTT 5 Response Topic. */
  responseTopic: string;
  qos?: 0 | 1;
}

export type AttachedHandler = (payload: Buffer) => Promise<Buffer | string>;

export type AttachedState = "connected" | "reconnecting" | "offline" | "error";

export interface AttachedServer {
  client: MqttClient;
  /** Settles once the first subscription is in place. */
  ready: Promise<void>;
  connected(): boolean;
  close(): Promise<void>;
}

export function attachToBroker(
  opts: AttachedOptions,
  handler: AttachedHandler,
  onState?: (state: AttachedState, detail?: string) => void,
): AttachedServer {
  const qos = opts.qos ?? 1;
  const client = mqttConnect(opts.url, {
    protocolVersion: 5,
    reconnectPeriod: 5000,
    connectTimeout: 10000,
    clean: true,
    ...opts.client,
  });
  let resolveReady: () => void = () => undefined;
  let rejectReady: (e: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  // A caller that never awaits `ready` must not see an unhandled rejection.
  ready.catch(() => undefined);

  client.on("connect", () => {
    client.subscribe(opts.requestTopic, { qos }, (err, granted) => {
      const refused = granted?.some((g) => g.qos === 128);
      if (err || refused) {
        const e = err ?? new Error(`the broker refused the subscription to ${opts.requestTopic}`);
        onState?.("error", e.message);
        rejectReady(e);
        return;
      }
      onState?.("connected");
      resolveReady();
    });
  });
  client.on("reconnect", () => onState?.("reconnecting"));
  client.on("offline", () => onState?.("offline"));
  client.on("error", (err) => {
    onState?.("error", err.message);
    rejectReady(err);
  });
  client.on("message", (topic: string, payload: Buffer, packet: IPublishPacket) => {
    if (topic !== opts.requestTopic) return;
    const props = packet.properties;
    void handler(payload).then(
      (answer) => {
        const target = props?.responseTopic ?? opts.responseTopic;
        const properties = props?.correlationData ? { correlationData: props.correlationData } : undefined;
        client.publish(target, answer, { qos, retain: false, properties }, () => undefined);
      },
      () => undefined,
    );
  });

  return {
    client,
    ready,
    connected: () => client.connected,
    close: () => new Promise<void>((resolve) => client.end(true, {}, () => resolve())),
  };
}
