/**
 * Everyware / Kura provisioning through an external broker (attached mode): one MQTT.js
 * client subscribes to every device's provision-message and confirmation topics
 * (`+` for the client id) and publishes each answer to the asking device's reply topic.
 *
 * The broker, not this service, decides CONNECTs and who may read what: it must check the
 * provision user name and password itself, and its ACLs must keep
 * `$EDC/<account>/<client id>/#` to that client (mosquitto: `pattern readwrite
 * $EDC/<account>/%c/#` with per-client users), else any client subscribed to
 * `$EDC/<account>/+/PROV-V1/REPLY/#` reads every device's answer. Here the request's
 * window, attempts and activation key are still checked for each provision message, and
 * the session's client id is the one in the topic. (The shared lib/transports/mqtt-attached.ts
 * serves one request topic and one response topic; this exchange needs a reply topic per
 * device and request, so the client is its own.)
 */
import type { IClientOptions, MqttClient } from "mqtt";
import { mqttConnect } from "../../transports/mqtt-connect";
import type { AttachedState } from "../../transports/mqtt-attached";
import { matchTopic } from "./namespace";
import type { KuraProvisioningService } from "./server";

export interface KuraAttachedOptions {
  url: string;
  client?: IClientOptions;
  onState?: (state: AttachedState, detail?: string) => void;
}

export interface KuraAttachedServer {
  client: MqttClient;
  /** Settles once both subscriptions are in place. */
  ready: Promise<void>;
  close(): Promise<void>;
}

/** A template as a subscription filter: the account and app id filled in, `+` for the rest. */
export function filterOf(template: string, account: string, appId: string): string {
  return template
    .split("/")
    .map((l) => (l === "{account}" ? account : l === "{appId}" ? appId : /^\{[A-Za-z]+\}$/.test(l) ? "+" : l))
    .join("/");
}

export function startKuraMqttAttached(
  service: KuraProvisioningService,
  opts: KuraAttachedOptions,
): KuraAttachedServer {
  const filters = [service.topics.request, service.topics.completed].map((t) =>
    filterOf(t, service.account, service.appId),
  );
  const client = mqttConnect(opts.url, {
    protocolVersion: 4,
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
  ready.catch(() => undefined);
  client.on("connect", () => {
    client.subscribe(filters, { qos: 1 }, (err, granted) => {
      const refused = granted?.some((g) => g.qos === 128);
      if (err || refused) {
        const e = err ?? new Error(`the broker refused the subscription to ${filters.join(", ")}`);
        opts.onState?.("error", e.message);
        rejectReady(e);
        return;
      }
      opts.onState?.("connected");
      resolveReady();
    });
  });
  client.on("reconnect", () => opts.onState?.("reconnecting"));
  client.on("offline", () => opts.onState?.("offline"));
  client.on("error", (err) => {
    opts.onState?.("error", err.message);
    rejectReady(err);
  });
  client.on("message", (topic: string, payload: Buffer) => {
    const clientId =
      matchTopic(service.topics.request, topic)?.clientId ??
      matchTopic(service.topics.completed, topic)?.clientId;
    if (clientId === undefined) return;
    const kind = service.topicOf(clientId, topic);
    if (kind === "completed") {
      void service.completed(clientId, payload);
      return;
    }
    if (kind !== "request") return;
    void service
      .provision(clientId, payload, { transport: "mqtt-attached", checkRequest: true })
      .then((answer) => {
        if (answer) client.publish(answer.topic, answer.payload, { qos: 1, retain: false }, () => undefined);
      });
  });
  return {
    client,
    ready,
    close: () => new Promise<void>((resolve) => client.end(true, {}, () => resolve())),
  };
}
