/**
 * ThingsBoard's serving dialect: the service core (server.ts) over the node's
 * ServiceContext, offered on embedded or attached MQTT, CoAP and HTTP (mounted on the
 * host's web server through the context), with management by message.
 */

import type { RunningService, ServiceContext, ServingDialect } from "../../service/dialect";
import { checkProfiles, TbProvisioningService, type TbProfile } from "./server";
import { startTbHost, type TbMqttConfig } from "./server-host";
import { tbHttpHandler } from "./server-http";
import { manage, type ManageResult } from "./server-manage";
import { HTTP_PATH } from "./wire";

export interface TbServeSettings {
  profiles: TbProfile[];
  /** The identical-request window (TbServiceSettings.repeatWindowMs); 0 or absent: off. */
  repeatWindowMs?: number;
  mqtt: TbMqttConfig;
  coap?: { host: string; port: number };
  /** Serve POST on the host's web server at this path (ThingsBoard's /api/v1/provision). */
  http?: { path?: string };
}

export interface TbRunningService extends RunningService {
  readonly service: TbProvisioningService;
  manage(operation: unknown, payload: unknown): Promise<ManageResult>;
}

export const thingsboardServing: ServingDialect<TbServeSettings, TbRunningService> = {
  id: "thingsboard",
  lockAccount: "profile",
  check(settings) {
    if (settings.profiles.length === 0) return "at least one provisioning profile is needed";
    return checkProfiles(settings.profiles);
  },
  async start(settings, ctx: ServiceContext) {
    const service = new TbProvisioningService(
      { profiles: settings.profiles, repeatWindowMs: settings.repeatWindowMs },
      ctx,
    );
    const host = await startTbHost(service, {
      mqtt: settings.mqtt,
      coap: settings.coap,
      serviceLimiter: ctx.limiter,
      onViolation: (what) => ctx.refused(`mqtt: ${what}`),
      onAttachedState: ctx.transportState,
    });
    const labels = [...host.labels];
    let unmount: (() => void) | undefined;
    if (settings.http && ctx.mountHttp) {
      const path = (settings.http.path || HTTP_PATH).trim();
      const handler = tbHttpHandler(service, {
        retryAfterSeconds: ctx.limiter?.retryAfterSeconds,
        onRefused: (reason) => ctx.refused(`http: ${reason}`),
      });
      unmount = ctx.mountHttp({ post: path }, handler);
      if (unmount) labels.push("http");
    }
    return {
      service,
      labels,
      counts: () => ({ ...service.counts, locked: service.lockedNow() }),
      manage: (operation, payload) => manage(service, operation, payload),
      async stop() {
        unmount?.();
        unmount = undefined;
        await host.close();
      },
    };
  },
};
