/**
 * Azure IoT Hub Device Provisioning's device side as a DeviceDialect (lib/client/dialect.ts):
 * prepare is ./device-prepare.ts, one attempt ./device-attempt.ts (MQTT or HTTPS); the
 * conductor does identity, reuse from the store, retry and save. The identity is the
 * registration id: msg.registrationId, else the dialog's, else AZURE_DPS_REGISTRATION_ID,
 * else the host name. With X.509 it must be the client certificate's CN.
 *
 * Retried: a throttling or failing service (BUSY, UNAVAILABLE, after the retry-after it
 * asked for), silence (TIMEOUT) and an unreachable one (CONNECT: a gateway offline at
 * deploy); every other answer is final (Azure's 4xx, "failed", "disabled", "unassigned").
 */
import type { DeviceDialect } from "../../client/dialect";
import { codeOf, isFinal, ProvisioningError } from "../../model/errors";
import { attemptAzureDps } from "./device-attempt";
import { dpsTargetOf, prepareAzureDevice, type AzurePrepared } from "./device-prepare";
import type { AzureDeviceSettings } from "./settings";

const RETRIED = new Set(["BUSY", "UNAVAILABLE", "TIMEOUT", "CONNECT"]);

export const azureDpsDialect: DeviceDialect<AzureDeviceSettings, AzurePrepared> = {
  id: "azure-dps",
  identity: { messageProperty: "registrationId", envVar: "AZURE_DPS_REGISTRATION_ID", hostname: true },
  endpointOf: (s) => dpsTargetOf(s.host, s.transport).endpoint,
  prepare(settings, identity) {
    try {
      return Promise.resolve(prepareAzureDevice(settings, identity));
    } catch (err) {
      return Promise.reject(err as ProvisioningError);
    }
  },
  attempt: attemptAzureDps,
  shouldRetry(error) {
    return RETRIED.has(codeOf(error)) || !isFinal(error);
  },
};
