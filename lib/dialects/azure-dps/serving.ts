/** Placeholder until the serving dialect lands (issue 13). */
import type { RunningService, ServingDialect } from "../../service/dialect";
import type { AzureServeSettings } from "./settings";

export const azureDpsServing: ServingDialect<AzureServeSettings, RunningService> = {
  id: "azure-dps",
  lockAccount: "deviceName",
  check: () => "Azure DPS is not built yet",
  start: () => Promise.reject(new Error("Azure DPS is not built yet")),
};
