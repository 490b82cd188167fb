/**
 * mqtt.js's connect(), with mqtt.js loaded at the first connection (lib/util/protocol-libs.ts):
 * a gateway that only serves (provision-response's embedded broker is aedes) or speaks HTTP
 * or CoAP never holds it.
 */
import type { IClientOptions, MqttClient } from "mqtt";
import { mqttLib } from "../util/protocol-libs";

export function mqttConnect(opts: IClientOptions): MqttClient;
export function mqttConnect(brokerUrl: string, opts?: IClientOptions): MqttClient;
export function mqttConnect(urlOrOpts: string | IClientOptions, opts?: IClientOptions): MqttClient {
  const mqtt = mqttLib();
  return typeof urlOrOpts === "string" ? mqtt.connect(urlOrOpts, opts) : mqtt.connect(urlOrOpts);
}
