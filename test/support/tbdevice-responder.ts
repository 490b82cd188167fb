/**
 * A small ThingsBoard-like provisioning answerer for the device-side tests, and an MQTT
 * responder that plays ThingsBoard's part behind a real broker (mosquitto): it subscribes
 * to /provision/request and answers on /provision/response in ThingsBoard's wire format.
 */
import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import { connect, type IClientOptions, type MqttClient } from "mqtt";
import {
  encodeResponse,
  FAILURE_RESPONSE,
  NOT_FOUND_RESPONSE,
  parseRequest,
  TOPIC_REQUEST,
  TOPIC_RESPONSE,
  type TbProvisionRequest,
  type TbProvisionResponse,
} from "../../lib/dialects/thingsboard/wire";

/** What the answerer does with one request: an answer, raw bytes, or no answer at all. */
export type Override = (req: TbProvisionRequest) => TbProvisionResponse | string | "drop" | undefined;

/**
 * ThingsBoard's "allow to create new devices" strategy: wrong key or secret -> NOT_FOUND,
 * a name seen before -> FAILURE, otherwise SUCCESS with the device's own credentials or a
 * generated token. Emits "request" with every parsed request.
 */
export class TbLikeProfile extends EventEmitter {
  readonly devices = new Map<string, TbProvisionRequest>();
  readonly requests: TbProvisionRequest[] = [];
  readonly raw: string[] = [];
  override?: Override;

  constructor(
    readonly key = "prov-key-1234",
    readonly secret = "prov-secret-5678",
  ) {
    super();
  }

  /** The answer body for one request body, or undefined for "do not answer". */
  handle(body: Buffer | string): string | undefined {
    this.raw.push(body.toString());
    const parsed = parseRequest(body);
    if (!parsed.ok) return encodeResponse(FAILURE_RESPONSE);
    const req = parsed.request;
    this.requests.push(req);
    this.emit("request", req);
    const o = this.override?.(req);
    if (o === "drop") return undefined;
    if (typeof o === "string") return o;
    if (o) return encodeResponse(o);
    if (req.provisionDeviceKey !== this.key || req.provisionDeviceSecret !== this.secret) {
      return encodeResponse(NOT_FOUND_RESPONSE);
    }
    const name = (req.deviceName ?? randomBytes(10).toString("hex")).trim();
    if (!name || this.devices.has(name)) return encodeResponse(FAILURE_RESPONSE);
    this.devices.set(name, req);
    switch (req.credentialsType ?? "ACCESS_TOKEN") {
      case "MQTT_BASIC":
        return encodeResponse({
          status: "SUCCESS",
          credentialsType: "MQTT_BASIC",
          credentialsValue: { clientId: req.clientId, userName: req.username, password: req.password },
        });
      case "X509_CERTIFICATE":
        return encodeResponse({
          status: "SUCCESS",
          credentialsType: "X509_CERTIFICATE",
          credentialsValue: req.hash ?? "",
        });
      default:
        return encodeResponse({
          status: "SUCCESS",
          credentialsType: "ACCESS_TOKEN",
          credentialsValue: req.token ?? `tok-${name}-${randomBytes(6).toString("hex")}`,
        });
    }
  }
}

export interface MqttResponder {
  client: MqttClient;
  stop: () => Promise<void>;
}

/**
 * Answers through a broker. Note: a plain broker delivers every answer to every waiting
 * device, unlike ThingsBoard, so use it for one device at a time.
 */
export async function startMqttResponder(
  brokerUrl: string,
  profile: TbLikeProfile,
  opts: IClientOptions = {},
): Promise<MqttResponder> {
  const client = connect(brokerUrl, {
    reconnectPeriod: 0,
    clientId: `tb-responder-${randomBytes(4).toString("hex")}`,
    ...opts,
  });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  await client.subscribeAsync(TOPIC_REQUEST, { qos: 1 });
  client.on("message", (topic, payload) => {
    if (topic !== TOPIC_REQUEST) return;
    const answer = profile.handle(payload);
    if (answer !== undefined) client.publish(TOPIC_RESPONSE, answer, { qos: 1 });
  });
  return { client, stop: () => client.endAsync(true) };
}
