/**
 * plgd DPS as a serving dialect (lib/service/dialect.ts): the service core (server.ts)
 * over the node's ServiceContext, on coaps+tcp with mutual TLS (listen.ts).
 */
import type { SecureContextOptions } from "node:tls";
import type { RunningService, ServiceContext, ServingDialect } from "../../service/dialect";
import type { EnrollmentGroup } from "./enrollment";
import { listenDps } from "./listen";
import { DpsService } from "./server";

export interface DpsServeSettings {
  groups: EnrollmentGroup[];
  host: string;
  port: number;
  tls: Pick<SecureContextOptions, "cert" | "key" | "passphrase">;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  inactivityTimeoutMs?: number;
  frameTimeoutMs?: number;
  /** Every connection begins with a PROXY protocol header (behind HAProxy send-proxy-v2). */
  proxyProtocol?: boolean;
  /** Listener trouble that does not stop serving (a peer's broken TLS), for the debug log. */
  onError?: (err: Error) => void;
}

export interface DpsRunningService extends RunningService {
  readonly service: DpsService;
  /** The port listened on (the one asked for, or the one given for 0). */
  readonly port: number;
}

export const plgdDpsServing: ServingDialect<DpsServeSettings, DpsRunningService> = {
  id: "plgd-dps",
  // The failed-proof guard counts addresses only: a manufacturer certificate that opens no
  // group names no account.
  lockAccount: "deviceId",
  check(settings) {
    if (settings.groups.length === 0) return "at least one enrollment group is required";
    if (!(Number.isInteger(settings.port) && settings.port >= 0 && settings.port < 65536))
      return "the port must be 0 to 65535";
    if (!settings.tls.cert || !settings.tls.key) return "the DPS service needs a TLS certificate and key";
    return undefined;
  },
  async start(settings, ctx: ServiceContext) {
    const service = new DpsService({ groups: settings.groups, ctx });
    const listener = await listenDps({
      service,
      host: settings.host,
      port: settings.port,
      tls: settings.tls,
      maxConnections: settings.maxConnections,
      maxConnectionsPerAddress: settings.maxConnectionsPerAddress,
      inactivityTimeoutMs: settings.inactivityTimeoutMs,
      frameTimeoutMs: settings.frameTimeoutMs,
      proxyProtocol: settings.proxyProtocol,
      onError: settings.onError,
    });
    return {
      service,
      port: listener.port,
      labels: [`coaps+tcp :${listener.port}`],
      counts: () => ({ ...service.counts, locked: ctx.failures?.lockedCount() ?? 0 }),
      stop: () => listener.close(),
    };
  },
};
