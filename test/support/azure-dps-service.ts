/**
 * The Azure DPS service as the serving tests run it: enrollments of every kind, keys and
 * certificates from ./azure-dps-fixtures.ts, a context from lib/service/context.ts with a
 * test decide() (the flow) when asked for, on a store the test may keep across restarts.
 */
import { randomBytes } from "node:crypto";
import { dpsResource, signSas } from "../../lib/dialects/azure-dps/sas";
import type { DpsCaller } from "../../lib/dialects/azure-dps/server";
import { azureDpsServing, type AzureRunningService } from "../../lib/dialects/azure-dps/serving";
import type { AzureServeSettings } from "../../lib/dialects/azure-dps/settings";
import type { ProvisioningRequest } from "../../lib/model/service";
import type { ServiceAuditEvent } from "../../lib/service/audit";
import {
  buildServiceContext,
  type BuiltServiceContext,
  type ServiceSettings,
} from "../../lib/service/context";
import type { StoreBackend } from "../../lib/stores/backend";
import { MemoryBackend } from "../../lib/stores/memory";
import type { AzurePki } from "./azure-dps-fixtures";

export const ID_SCOPE = "0ne00AB12CD";
export const HUB_A = "hub-a.azure-devices.net";
export const HUB_B = "hub-b.azure-devices.net";
export const key = () => randomBytes(32).toString("base64");

/** A device of ID_SCOPE calling over HTTPS with a SAS token signed by `deviceKey` (valid 10 minutes). */
export function sasCaller(registrationId: string, deviceKey: string): DpsCaller {
  return {
    transport: "https",
    idScope: ID_SCOPE,
    registrationId,
    token: signSas(dpsResource(ID_SCOPE, registrationId), deviceKey, Date.now() / 1000 + 600),
  };
}

/** Keys made once per test run: the enrollments' secrets, none of which may reach an audit event. */
export const KEYS = {
  individualPrimary: key(),
  individualSecondary: key(),
  groupPrimary: key(),
  disabled: key(),
  custom: key(),
  slow: key(),
};

export function enrollments(pki: AzurePki): AzureServeSettings["enrollments"] {
  return [
    {
      kind: "individual",
      id: "dev-individual",
      attestation: "symmetric-key",
      primaryKey: KEYS.individualPrimary,
      secondaryKey: KEYS.individualSecondary,
      enabled: true,
      allocation: "static",
      iotHubs: [HUB_B],
    },
    {
      kind: "group",
      id: "group-sym",
      attestation: "symmetric-key",
      primaryKey: KEYS.groupPrimary,
      enabled: true,
    },
    { kind: "group", id: "group-x509", attestation: "x509", certificates: [pki.rootCa], enabled: true },
    {
      kind: "individual",
      id: "dev-disabled",
      attestation: "symmetric-key",
      primaryKey: KEYS.disabled,
      enabled: false,
    },
    {
      kind: "individual",
      id: "dev-custom",
      attestation: "symmetric-key",
      primaryKey: KEYS.custom,
      enabled: true,
      allocation: "custom",
    },
    {
      kind: "individual",
      id: "dev-slow",
      attestation: "symmetric-key",
      primaryKey: KEYS.slow,
      enabled: true,
    },
  ];
}

export interface TestService {
  running: AzureRunningService;
  built: BuiltServiceContext;
  audits: ServiceAuditEvent[];
  asked: ProvisioningRequest[];
  stop(): Promise<void>;
}

/**
 * Starts the service with `flow` as the flow (every registration waits for it); its
 * answer goes back through the context's answer(), as the node's decision input does.
 */
export async function startTestService(
  settings: AzureServeSettings,
  opts: {
    store?: StoreBackend;
    flow?: (r: ProvisioningRequest) => Promise<unknown>;
    rateLimit?: ServiceSettings["rateLimit"];
    failureLimit?: ServiceSettings["failureLimit"];
  } = {},
): Promise<TestService> {
  const audits: ServiceAuditEvent[] = [];
  const asked: ProvisioningRequest[] = [];
  const flow = opts.flow;
  const built: BuiltServiceContext = buildServiceContext({
    dialect: "azure-dps",
    store: opts.store ?? new MemoryBackend(),
    rateLimit: opts.rateLimit ?? false,
    failureLimit: opts.failureLimit ?? { enabled: false },
    lockAccount: azureDpsServing.lockAccount,
    decide: flow
      ? {
          timeoutMs: 30000,
          ask: (correlationId, request) => {
            asked.push(request);
            void flow(request).then((answer) => built.answer(correlationId, answer));
          },
        }
      : undefined,
    audit: (e) => audits.push(e),
    refused: () => undefined,
  });
  const problem = azureDpsServing.check(settings);
  if (problem) throw new Error(problem);
  const running = await azureDpsServing.start(settings, built.ctx);
  return {
    running,
    built,
    audits,
    asked,
    stop: async () => {
      built.cancelDecisions("test over");
      await running.stop();
    },
  };
}
