/**
 * Starts and stops the transports one provisioning service is offered on (MQTT embedded
 * or attached, CoAP; HTTP is mounted by the caller on its own web server), with the
 * per-remote flood protection they share. Plain TypeScript so that the node stays thin.
 */

import type { IClientOptions } from "mqtt";
import type { TlsOptions } from "node:tls";
import { RateLimiter, type RateLimitOptions } from "../../service/rate-limit";
import type { AttachedState } from "../../transports/mqtt-attached";
import type { TbProvisioningService } from "./server";
import { startTbCoapServer } from "./server-coap";
import { startTbMqttServer } from "./server-mqtt";
import { startTbMqttAttached } from "./server-mqtt-attached";

export type TbMqttConfig =
  | { mode: "off" }
  | {
      mode: "embedded";
      host: string;
      port: number;
      tls?: TlsOptions;
      /** Expect a PROXY protocol header on every connection. */
      proxyProtocol?: boolean;
      closeAfterMs?: number;
      /** Session slots and deadlines (startTbMqttServer's options of the same names). */
      maxSessions?: number;
      maxSessionsPerRemote?: number;
      firstRequestMs?: number;
      sessionLifetimeMs?: number;
    }
  | { mode: "attached"; url: string; client?: IClientOptions };

export interface TbHostConfig {
  mqtt: TbMqttConfig;
  coap?: { host: string; port: number };
  /** New MQTT connections per remote; requests are limited by the service's own limiter. */
  connectRate?: RateLimitOptions;
  /** The service's own limiter: embedded MQTT charges it at CONNECT (see startTbMqttServer). */
  serviceLimiter?: RateLimiter;
  onViolation?: (what: string, remote: string | undefined) => void;
  onAttachedState?: (state: AttachedState, detail?: string) => void;
}

export interface TbHost {
  /** Short labels for status: "mqtt :1883", "mqtts :8883", "mqtt attached", "coap :5683". */
  labels: string[];
  close(): Promise<void>;
}

/** Starts everything configured; if one transport cannot start, the others are stopped again. */
export async function startTbHost(service: TbProvisioningService, cfg: TbHostConfig): Promise<TbHost> {
  const closers: Array<() => Promise<void>> = [];
  const labels: string[] = [];
  const close = async () => {
    await Promise.allSettled(closers.splice(0).map((c) => c()));
  };
  try {
    if (cfg.mqtt.mode === "embedded") {
      const m = await startTbMqttServer(service, {
        host: cfg.mqtt.host,
        port: cfg.mqtt.port,
        tls: cfg.mqtt.tls,
        proxyProtocol: cfg.mqtt.proxyProtocol,
        closeAfterMs: cfg.mqtt.closeAfterMs,
        maxSessions: cfg.mqtt.maxSessions,
        maxSessionsPerRemote: cfg.mqtt.maxSessionsPerRemote,
        firstRequestMs: cfg.mqtt.firstRequestMs,
        sessionLifetimeMs: cfg.mqtt.sessionLifetimeMs,
        connectLimiter: cfg.connectRate ? new RateLimiter(cfg.connectRate) : undefined,
        serviceLimiter: cfg.serviceLimiter,
        onViolation: cfg.onViolation,
      });
      closers.push(() => m.close());
      labels.push(`${m.tls ? "mqtts" : "mqtt"} :${m.port}`);
    } else if (cfg.mqtt.mode === "attached") {
      const a = startTbMqttAttached(service, {
        url: cfg.mqtt.url,
        client: cfg.mqtt.client,
        onState: cfg.onAttachedState,
      });
      closers.push(() => a.close());
      labels.push("mqtt attached");
    }
    if (cfg.coap) {
      const c = await startTbCoapServer(service, cfg.coap);
      closers.push(() => c.close());
      labels.push(`coap :${c.port}`);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { labels, close };
}
