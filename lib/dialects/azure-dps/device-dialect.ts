/** Placeholder until the device dialect lands (issue 13). */
import type { DeviceDialect } from "../../client/dialect";
import { finalError } from "../../model/errors";
import type { AzureDeviceSettings } from "./settings";

export const azureDpsDialect: DeviceDialect<AzureDeviceSettings, AzureDeviceSettings> = {
  id: "azure-dps",
  identity: { messageProperty: "registrationId" },
  endpointOf: (s) => `mqtts://${s.host}`,
  prepare: () => Promise.reject(finalError("CONFIG", "Azure DPS is not built yet")),
  attempt: () => Promise.reject(finalError("CONFIG", "Azure DPS is not built yet")),
};
