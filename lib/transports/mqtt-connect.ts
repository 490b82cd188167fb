/**
 * mqtt.js's connect(), with mqtt.js loaded at the first connection instead of when Node-RED
 * loads this package. Node-RED loads every node file when it starts, used or not, and a
 * gateway that only serves (provision-response's embedded broker is aedes) or speaks HTTP
 * or CoAP never needs mqtt.js, about 12 MiB of resident memory once loaded.
 */
import type { IClientOptions, MqttClient } from "mqtt";

export function mqttConnect(opts: IClientOptions): MqttClient;
export function mqttConnect(brokerUrl: string, opts?: IClientOptions): MqttClient;
export function mqttConnect(urlOrOpts: string | IClientOptions, opts?: IClientOptions): MqttClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mqtt = require("mqtt") as typeof import("mqtt");
  return typeof urlOrOpts === "string" ? mqtt.connect(urlOrOpts, opts) : mqtt.connect(urlOrOpts);
}
