/**
 * Mainflux bootstrap as a serving dialect: the service (server.ts) over the node's
 * ServiceContext. The registry lives in the context's store; the context's audit,
 * per-remote rate limit (429 with Retry-After, as upstream's own HTTP throttling answers),
 * failed-attempt guard and the flow's decision reach every bootstrap request; the
 * endpoints are mounted on the host's web server (Node-RED's httpNode).
 */
import type { RunningService, ServiceContext, ServingDialect } from "../../service/dialect";
import { cfbKey, checkKeyId, gcmKey } from "./crypto";
import { bootstrapHandler } from "./http";
import { manage, type ManageResult } from "./manage";
import { ConfigRegistry } from "./registry";
import { MainfluxBootstrapService } from "./server";
import type { FieldGeneration } from "./wire";

export interface MainfluxServeSettings {
  /** Serve the plain endpoint (default true, as upstream). */
  allowPlain?: boolean;
  /** Mainflux's secure mode: the AES key as text (16, 24 or 32 bytes); off when empty. */
  encryptionKey?: string;
  /** The GCM mode of this package: key id and 64 hex characters; off when the key is empty. */
  gcm?: { keyId: string; key: string; windowSeconds?: number };
  /** Bearer token of the management endpoints; they are not served without one. */
  managementToken?: string;
  fields?: FieldGeneration;
  /** A path prefix the endpoints live under (e.g. "/bootstrap"); "" by default. */
  basePath?: string;
}

export interface MainfluxRunningService extends RunningService {
  readonly service: MainfluxBootstrapService;
  readonly registry: ConfigRegistry;
  /** The modes served: "plain", "secure", "gcm". */
  readonly modes: readonly string[];
  manage(operation: unknown, payload: unknown): Promise<ManageResult>;
}

/** The modes a configuration serves, in the status's words. */
export function modesOf(s: MainfluxServeSettings): string[] {
  const modes: string[] = [];
  if (s.allowPlain !== false) modes.push("plain");
  if (s.encryptionKey) modes.push("secure");
  if (s.gcm?.key) modes.push("gcm");
  return modes;
}

/** The keys of the settings as the service takes them; throws with what is wrong. */
function keysOf(s: MainfluxServeSettings) {
  return {
    cfbKey: s.encryptionKey ? cfbKey(s.encryptionKey) : undefined,
    gcm: s.gcm?.key
      ? { keyId: checkKeyId(s.gcm.keyId), key: gcmKey(s.gcm.key), windowSeconds: s.gcm.windowSeconds }
      : undefined,
  };
}

export const mainfluxServing: ServingDialect<MainfluxServeSettings, MainfluxRunningService> = {
  id: "mainflux",
  // The failed-attempt guard's account is the external id (audit's deviceName).
  lockAccount: "deviceName",
  check(settings) {
    try {
      keysOf(settings);
    } catch (err) {
      return (err as Error).message;
    }
    if (modesOf(settings).length === 0) return "no bootstrap mode is on: allow plain, or set a key";
    return undefined;
  },
  async start(settings, ctx: ServiceContext) {
    const registry = new ConfigRegistry(ctx.store);
    await registry.load();
    const service = new MainfluxBootstrapService({
      registry,
      ...keysOf(settings),
      allowPlain: settings.allowPlain !== false,
      managementToken: settings.managementToken || undefined,
      fields: settings.fields,
      failures: ctx.failures,
      decide: ctx.decide,
      onAudit: ctx.audit,
      now: ctx.now,
    });
    const handler = bootstrapHandler(service, {
      basePath: settings.basePath,
      limiter: ctx.limiter,
      retryAfterSeconds: ctx.limiter?.retryAfterSeconds,
      onRefused: (reason) => ctx.refused(`http: ${reason}`),
    });
    // The claim keeps Node-RED's admin body parsers away from these requests.
    let unmount = ctx.mountHttp?.("use", handler, handler.claims);
    return {
      service,
      registry,
      modes: modesOf(settings),
      labels: unmount ? ["http"] : [],
      counts: () => ({
        provisioned: service.counts.bootstrapped,
        refused: service.counts.refused,
        locked: service.lockedNow(),
      }),
      manage: (operation, payload) => manage(registry, operation, payload),
      async stop() {
        unmount?.();
        unmount = undefined;
      },
    };
  },
};
