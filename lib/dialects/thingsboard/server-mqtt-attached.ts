/**
 * ThingsBoard provisioning through an external broker (attached mode). The broker decides
 * who may read /provision/response: without MQTT 5 response topics or per-client ACLs,
 * every client subscribed there sees every answer (see the node's help).
 */

import { attachToBroker, type AttachedServer, type AttachedState } from "../../transports/mqtt-attached";
import type { IClientOptions } from "mqtt";
import type { TbProvisioningService } from "./server";
import { encodeResponse, TOPIC_REQUEST, TOPIC_RESPONSE } from "./wire";

export interface TbAttachedOptions {
  url: string;
  client?: IClientOptions;
  onState?: (state: AttachedState, detail?: string) => void;
}

export function startTbMqttAttached(service: TbProvisioningService, opts: TbAttachedOptions): AttachedServer {
  return attachToBroker(
    {
      url: opts.url,
      client: opts.client,
      requestTopic: TOPIC_REQUEST,
      responseTopic: TOPIC_RESPONSE,
      qos: 1,
    },
    async (payload) =>
      encodeResponse((await service.handle(payload, { transport: "mqtt-attached" })).response),
    opts.onState,
  );
}
