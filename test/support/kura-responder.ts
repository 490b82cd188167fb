/**
 * The service's part of the Everyware-style exchange (lib/dialects/kura/namespace.ts),
 * played in a test: an MQTT client of the same broker under its own user, built from the
 * namespace's own parsers and builders, answering each provision message as told.
 */
import { EventEmitter } from "node:events";
import type { MqttClient } from "mqtt";
import {
  buildProvisionAnswer,
  buildProvisionRefusal,
  DEFAULT_TOPICS,
  matchTopic,
  parseProvisionRequest,
  topicFor,
  type KuraProvisionAnswer,
  type KuraProvisionRequest,
  type KuraTopics,
} from "../../lib/dialects/kura/namespace";
import { decodeKuraPayload, encodeKuraPayload, metricsOf } from "../../lib/dialects/kura/payload";

export type Behaviour =
  "answer" | "refuse" | "not-found" | "garbage" | "silent" | "untrusted" | "no-configuration" | "huge";

export interface Seen {
  topic: string;
  request: KuraProvisionRequest;
}

/** What the responder subscribes to: every request and completion under the default app id. */
export const RESPONDER_FILTER = "$EDC/+/+/PROV-V1/EXEC/+";

export class KuraResponder extends EventEmitter {
  behaviour: Behaviour = "answer";
  /** The activation key a request must carry (a 403 otherwise), when set. */
  activationKey?: string;
  /** Only provision messages of this account are answered (several responders on one broker). */
  account?: string;
  requests: Seen[] = [];
  completed: Array<{ topic: string; requestId: unknown }> = [];
  private waiters: Array<() => void> = [];

  constructor(
    readonly client: MqttClient,
    readonly answer: () => KuraProvisionAnswer,
    readonly foreignChain: string[] = [],
    readonly topics: KuraTopics = DEFAULT_TOPICS,
  ) {
    super();
    client.on("message", (topic, payload) => this.onMessage(topic, payload));
  }

  /** Resolves once a completion has arrived for `requestId`. */
  completion(requestId: string): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!this.completed.some((c) => c.requestId === requestId)) return false;
        resolve();
        return true;
      };
      if (!check()) this.waiters.push(() => void check());
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    const done = matchTopic(this.topics.completed, topic);
    if (done && (!this.account || done.account === this.account)) {
      this.completed.push({ topic, requestId: metricsOf(decodeKuraPayload(payload)).get("request.id") });
      for (const w of this.waiters.splice(0)) w();
      return;
    }
    const values = matchTopic(this.topics.request, topic);
    if (!values || (this.account && values.account !== this.account)) return;
    const request = parseProvisionRequest(decodeKuraPayload(payload));
    this.requests.push({ topic, request });
    this.emit("request", request);
    const reply = topicFor(this.topics.reply, { ...values, requestId: request.requestId });
    const send = (body: Buffer): void => void this.client.publish(reply, body, { qos: 1 });
    if (this.activationKey !== undefined && request.activationKey !== this.activationKey)
      return send(encodeKuraPayload(buildProvisionRefusal(403, "wrong activation key")));
    switch (this.behaviour) {
      case "answer":
        return send(encodeKuraPayload(buildProvisionAnswer(this.answer()), { gzip: true }));
      case "untrusted":
        return send(
          encodeKuraPayload(buildProvisionAnswer({ ...this.answer(), certificateChain: this.foreignChain })),
        );
      case "no-configuration":
        return send(encodeKuraPayload(buildProvisionAnswer({ ...this.answer(), configuration: undefined })));
      case "refuse":
        return send(encodeKuraPayload(buildProvisionRefusal(403, "wrong activation key")));
      case "not-found":
        return send(encodeKuraPayload(buildProvisionRefusal(404, "no provision request")));
      case "garbage":
        return send(Buffer.from([0x1f, 0x8b, 0x00, 0x01]));
      case "huge":
        return send(Buffer.alloc(2 * 1024 * 1024, 0x41));
      case "silent":
        return;
    }
  }
}
