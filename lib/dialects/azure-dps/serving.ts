/**
 * The Azure DPS-compatible serving dialect: the service core (./server.ts) over the node's
 * ServiceContext, offered over MQTT on the embedded broker (TLS only, ./server-mqtt.ts)
 * and over HTTPS on a server of its own (./server-https.ts), with management by message
 * (./server-manage.ts).
 */
import type { RunningService, ServiceContext, ServingDialect } from "../../service/dialect";
import { AzureDpsService } from "./server";
import { checkAzureServiceSettings } from "./server-enrollments";
import { startAzureHttpsServer } from "./server-https";
import { manageAzure, type AzureManageResult } from "./server-manage";
import { startAzureMqttServer } from "./server-mqtt";
import type { AzureServeSettings } from "./settings";

export interface AzureRunningService extends RunningService {
  readonly service: AzureDpsService;
  /** The ports listened on (0 settings give ephemeral ones). */
  readonly mqttPort?: number;
  readonly httpsPort?: number;
  manage(operation: unknown, payload: unknown): Promise<AzureManageResult>;
}

function tlsError(tls: unknown, what: string): string | undefined {
  const t = tls as { key?: unknown; cert?: unknown; pfx?: unknown } | undefined;
  if (!t || typeof t !== "object" || (!(t.key && t.cert) && !t.pfx))
    return `${what} needs the server's TLS key and certificate (Azure serves TLS only)`;
  return undefined;
}

function portError(p: { host?: unknown; port?: unknown }, what: string): string | undefined {
  if (typeof p.host !== "string" || p.host === "") return `${what} needs a bind address`;
  if (!Number.isInteger(p.port) || (p.port as number) < 0 || (p.port as number) > 65535)
    return `${what}'s port must be 0..65535`;
  return undefined;
}

export const azureDpsServing: ServingDialect<AzureServeSettings, AzureRunningService> = {
  id: "azure-dps",
  lockAccount: "deviceName",
  check(settings) {
    if (!settings.mqtt && !settings.https) return "Azure DPS needs MQTT, HTTPS or both";
    if (settings.mqtt) {
      const e = portError(settings.mqtt, "MQTT") ?? tlsError(settings.mqtt.tls, "MQTT");
      if (e) return e;
    }
    if (settings.https) {
      const e = portError(settings.https, "HTTPS") ?? tlsError(settings.https.tls, "HTTPS");
      if (e) return e;
    }
    if (
      settings.mqtt &&
      settings.https &&
      settings.mqtt.port !== 0 &&
      settings.mqtt.port === settings.https.port &&
      settings.mqtt.host === settings.https.host
    )
      return "MQTT and HTTPS cannot share one port";
    return checkAzureServiceSettings(settings);
  },
  async start(settings, ctx: ServiceContext) {
    const service = new AzureDpsService(settings, ctx);
    await service.open();
    const closers: Array<() => Promise<void>> = [];
    const labels: string[] = [];
    let mqttPort: number | undefined;
    let httpsPort: number | undefined;
    const onViolation = (what: string) => ctx.refused(what);
    try {
      if (settings.mqtt) {
        const m = await startAzureMqttServer(service, {
          host: settings.mqtt.host,
          port: settings.mqtt.port,
          tls: settings.mqtt.tls,
          limits: settings.mqtt.limits,
          proxyProtocol: settings.mqtt.proxyProtocol,
          serviceLimiter: ctx.limiter,
          onViolation: (what) => onViolation(`mqtt: ${what}`),
        });
        mqttPort = m.port;
        labels.push(`mqtts :${m.port}`);
        closers.push(() => m.close());
      }
      if (settings.https) {
        const h = await startAzureHttpsServer(service, {
          host: settings.https.host,
          port: settings.https.port,
          tls: settings.https.tls,
          proxyProtocol: settings.https.proxyProtocol,
          onViolation: (what) => onViolation(what),
        });
        httpsPort = h.port;
        labels.push(`https :${h.port}`);
        closers.push(() => h.close());
      }
    } catch (err) {
      await Promise.allSettled(closers.map((c) => c()));
      throw err;
    }
    let stopped: Promise<void> | undefined;
    return {
      service,
      mqttPort,
      httpsPort,
      labels,
      counts: () => ({ ...service.counts, locked: service.lockedNow() }),
      manage: (operation, payload) => manageAzure(service, operation, payload),
      stop: () =>
        (stopped ??= (async () => {
          await Promise.allSettled(closers.map((c) => c()));
          await service.drain();
        })()),
    };
  },
};
