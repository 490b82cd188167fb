/** Shared pieces of the TB-SERVE tests: a service over a MemoryBackend and MQTT devices. */

import { connect, type IClientOptions, type MqttClient } from "mqtt";
import { TbProvisioningService, type TbProfile } from "../../lib/dialects/thingsboard/server";
import type { ProvisioningRequest } from "../../lib/model/service";
import type { ServiceAuditEvent } from "../../lib/service/audit";
import type { ServiceContext } from "../../lib/service/dialect";
import type { FailureLimiter } from "../../lib/service/failure-limit";
import type { FlowAnswer } from "../../lib/service/pending";
import type { RateLimiter } from "../../lib/service/rate-limit";
import type { StoreBackend } from "../../lib/stores/backend";
import { MemoryBackend } from "../../lib/stores/memory";

export const KEY = "test-provision-key";
export const SECRET = "test-provision-secret-8f3a";

export function profile(over: Partial<TbProfile> = {}): TbProfile {
  return {
    name: "fleet",
    provisionDeviceKey: KEY,
    provisionDeviceSecret: SECRET,
    strategy: "allow-create",
    credentialsType: "ACCESS_TOKEN",
    allowReprovision: false,
    ...over,
  };
}

/** The pieces of a ServiceContext a test sets; the rest stays off (no limiter, no guard). */
export interface ServiceOverrides {
  profiles?: TbProfile[];
  repeatWindowMs?: number;
  backend?: StoreBackend;
  limiter?: RateLimiter;
  failures?: FailureLimiter;
  decide?: (request: ProvisioningRequest) => Promise<FlowAnswer>;
  onAudit?: (event: ServiceAuditEvent) => void;
  now?: () => number;
}

export function makeService(over: ServiceOverrides = {}): {
  service: TbProvisioningService;
  audits: ServiceAuditEvent[];
  backend: StoreBackend;
} {
  const backend = over.backend ?? new MemoryBackend();
  const audits: ServiceAuditEvent[] = [];
  const ctx: ServiceContext = {
    dialect: "thingsboard",
    store: backend,
    limiter: over.limiter,
    failures: over.failures,
    decide: over.decide,
    audit: over.onAudit ?? ((e) => audits.push(e)),
    now: over.now ?? Date.now,
    refused: () => undefined,
  };
  const service = new TbProvisioningService(
    { profiles: over.profiles ?? [profile()], repeatWindowMs: over.repeatWindowMs },
    ctx,
  );
  return { service, audits, backend };
}

export function request(over: Record<string, unknown> = {}): string {
  return JSON.stringify({ provisionDeviceKey: KEY, provisionDeviceSecret: SECRET, ...over });
}

export interface MqttDevice {
  client: MqttClient;
  messages: Array<{ topic: string; payload: string }>;
  /** Resolves when the server ends the session. */
  closed: Promise<void>;
}

/** Connects as a provisioning session and subscribes to /provision/response. */
export async function mqttDevice(
  url: string,
  opts: IClientOptions = {},
  subscribe = true,
): Promise<MqttDevice> {
  const client = connect(url, {
    username: "provision",
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10000,
    ...opts,
  });
  const messages: MqttDevice["messages"] = [];
  client.on("message", (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  client.on("error", () => undefined);
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
    client.once("close", () => reject(new Error("closed before CONNACK")));
  });
  if (subscribe) await client.subscribeAsync("/provision/response", { qos: 1 });
  return { client, messages, closed };
}

/** Waits until the device holds `n` messages (or rejects when its session closes first). */
export function nextMessages(dev: MqttDevice, n = 1, ms = 10000): Promise<MqttDevice["messages"]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    const check = () => {
      if (dev.messages.length >= n) {
        clearTimeout(timer);
        dev.client.off("message", onMessage);
        resolve(dev.messages);
      }
    };
    const onMessage = () => setImmediate(check);
    dev.client.on("message", onMessage);
    dev.closed.then(() => {
      clearTimeout(timer);
      if (dev.messages.length >= n) resolve(dev.messages);
      else reject(new Error("session closed without an answer"));
    });
    check();
  });
}
