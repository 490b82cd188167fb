/**
 * The Everyware / Kura serving dialect: provision requests (server-requests.ts) decided by
 * the service core (server.ts) over the node's ServiceContext, offered on the embedded
 * broker (a port it may share with ThingsBoard) or through an external broker, with
 * management by message (server-manage.ts).
 */
import type { IClientOptions } from "mqtt";
import type { TlsOptions } from "node:tls";
import type { RunningService, ServiceContext, ServingDialect } from "../../service/dialect";
import type { ConnectionLimits } from "../../transports/embedded-broker";
import { checkKuraServiceSettings, KuraProvisioningService, type KuraServiceSettings } from "./server";
import { manageKura, type KuraManageResult } from "./server-manage";
import { startKuraMqttServer } from "./server-mqtt";
import { startKuraMqttAttached } from "./server-mqtt-attached";
import { startKuraAccountBroker } from "./account-broker";

export type KuraMqttConfig =
  | {
      mode: "embedded";
      host: string;
      port: number;
      tls?: TlsOptions;
      /** Expect a PROXY protocol header on every connection. */
      proxyProtocol?: boolean;
      maxRequestsPerSession?: number;
      limits?: ConnectionLimits;
    }
  | { mode: "attached"; url: string; client?: IClientOptions };

export interface KuraServeSettings extends KuraServiceSettings {
  mqtt: KuraMqttConfig;
  /** The demo stand-in of an account broker (account-broker.ts), when wanted. */
  accountBroker?: { host: string; port: number };
}

export interface KuraRunningService extends RunningService {
  readonly service: KuraProvisioningService;
  /** The embedded broker's port (undefined in attached mode). */
  readonly port?: number;
  /** The demo account broker's port, when it runs. */
  readonly accountBrokerPort?: number;
  /** Attached mode: settles once the subscriptions are in place. */
  readonly ready: Promise<void>;
  manage(operation: unknown, payload: unknown): Promise<KuraManageResult>;
}

export const kuraServing: ServingDialect<KuraServeSettings, KuraRunningService> = {
  id: "kura",
  lockAccount: "deviceName",
  check(settings) {
    const m = settings.mqtt;
    if (!m || (m.mode !== "embedded" && m.mode !== "attached"))
      return "the MQTT transport must be embedded or attached";
    if (m.mode === "attached" && !/^(mqtts?|wss?):\/\//.test(m.url ?? ""))
      return "the external broker's URL must start with mqtt://, mqtts://, ws:// or wss://";
    return checkKuraServiceSettings(settings);
  },
  async start(settings, ctx: ServiceContext) {
    const service = new KuraProvisioningService(settings, ctx);
    await service.open();
    const m = settings.mqtt;
    let close: () => Promise<void>;
    let label: string;
    let port: number | undefined;
    let ready: Promise<void> = Promise.resolve();
    if (m.mode === "embedded") {
      const server = await startKuraMqttServer(service, {
        host: m.host,
        port: m.port,
        tls: m.tls,
        proxyProtocol: m.proxyProtocol,
        maxRequestsPerSession: m.maxRequestsPerSession,
        limits: m.limits,
        serviceLimiter: ctx.limiter,
        onViolation: (what) => ctx.refused(`mqtt: ${what}`),
      });
      port = server.port;
      label = `${server.tls ? "mqtts" : "mqtt"} :${server.port}`;
      close = () => server.close();
    } else {
      const a = startKuraMqttAttached(service, { url: m.url, client: m.client, onState: ctx.transportState });
      ready = a.ready;
      label = "mqtt attached";
      close = () => a.close();
    }
    const labels = [label];
    let accountBrokerPort: number | undefined;
    if (settings.accountBroker) {
      try {
        const ab = await startKuraAccountBroker(service, settings.accountBroker);
        accountBrokerPort = ab.port;
        labels.push(`account :${ab.port}`);
        const first = close;
        close = async () => {
          await Promise.allSettled([first(), ab.close()]);
        };
      } catch (err) {
        await close();
        throw err;
      }
    }
    let stopped: Promise<void> | undefined;
    return {
      service,
      port,
      accountBrokerPort,
      ready,
      labels,
      counts: () => ({ ...service.counts, locked: service.lockedNow() }),
      manage: (operation, payload) => manageKura(service, operation, payload),
      stop: () =>
        (stopped ??= (async () => {
          await close();
          await service.drain();
        })()),
    };
  },
};
