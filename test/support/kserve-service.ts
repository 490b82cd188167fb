/** A Kura serving dialect started for a test over a ServiceContext of its own. */
import {
  kuraServing,
  type KuraMqttConfig,
  type KuraRunningService,
  type KuraServeSettings,
} from "../../lib/dialects/kura/serving";
import type { ServiceAuditEvent } from "../../lib/service/audit";
import { buildServiceContext, type ServiceSettings } from "../../lib/service/context";
import { ACCOUNT } from "./kserve-peers";

export interface StartedKura {
  running: KuraRunningService;
  audits: ServiceAuditEvent[];
  stop(): Promise<void>;
}

export async function startKura(
  mqtt: KuraMqttConfig = { mode: "embedded", host: "127.0.0.1", port: 0 },
  over: Partial<ServiceSettings> = {},
  requests: Array<Record<string, unknown>> = [],
  extra: Partial<KuraServeSettings> = {},
): Promise<StartedKura> {
  const audits: ServiceAuditEvent[] = [];
  const built = buildServiceContext({
    dialect: "kura",
    lockAccount: "deviceName",
    rateLimit: false,
    failureLimit: { enabled: false },
    audit: (e) => audits.push(e),
    ...over,
  });
  const settings: KuraServeSettings = { accountName: ACCOUNT, mqtt, requests: requests as never, ...extra };
  const problem = kuraServing.check(settings);
  if (problem) throw new Error(problem);
  const running = await kuraServing.start(settings, built.ctx);
  return { running, audits, stop: () => running.stop() };
}
