/**
 * Azure DPS device side: an assigned registration in the neutral shape, with what a flow
 * needs to connect to its IoT hub. IoT Hub's MQTT: client id = device id, user name
 * `{hub}/{deviceId}/?api-version=2021-04-12`, password a SAS token signed with the device
 * key (or none with X.509), port 8883 ("Communicate with an IoT hub using the MQTT
 * protocol"); the connection string as Azure's device SDKs take it
 * (`HostName=..;DeviceId=..;SharedAccessKey=..`, or `;x509=true`).
 */
import { finalError } from "../../model/errors";
import type { Credentials, ProvisioningResult } from "../../model/result";
import type { AzurePrepared } from "./device-prepare";
import { IOT_HUB_API_VERSION, type RegistrationState } from "./wire";

const HUB_MQTT_PORT = 8883;
/** A hub host name as it may go into a URI and a connection string. */
const HUB_NAME = /^[A-Za-z0-9\-._]{1,253}$/u;

export function azureResultOf(p: AzurePrepared, state: RegistrationState, now: Date): ProvisioningResult {
  const hub = state.assignedHub as string;
  const deviceId = state.deviceId as string;
  if (!HUB_NAME.test(hub))
    throw finalError("INVALID_ANSWER", `${p.target.endpoint} assigned a hub whose name is not a host name`);
  // A device id is put into a connection string, where ';' and '=' separate its fields.
  // eslint-disable-next-line no-control-regex
  if (deviceId.length > 128 || /[;=\u0000-\u001f]/u.test(deviceId))
    throw finalError("INVALID_ANSWER", `${p.target.endpoint} assigned a device id that cannot be used`);
  const username = `${hub}/${deviceId}/?api-version=${IOT_HUB_API_VERSION}`;
  const credentials: Credentials =
    p.attestation === "x509"
      ? {
          type: "X509_CERTIFICATE",
          clientId: deviceId,
          username,
          connectionString: `HostName=${hub};DeviceId=${deviceId};x509=true`,
        }
      : {
          type: "SYMMETRIC_KEY",
          key: p.deviceKey,
          clientId: deviceId,
          username,
          connectionString: `HostName=${hub};DeviceId=${deviceId};SharedAccessKey=${p.deviceKey ?? ""}`,
        };
  const enrollmentGroupId = state.symmetricKey?.enrollmentGroupId ?? state.x509?.enrollmentGroupId;
  const configuration: ProvisioningResult["configuration"] = {
    servers: [{ uri: `mqtts://${hub}:${HUB_MQTT_PORT}`, id: hub }],
    hubId: hub,
    deviceId,
    status: state.status,
  };
  const extra: Record<string, unknown> = {
    substatus: state.substatus,
    etag: state.etag,
    payload: state.payload,
    createdDateTimeUtc: state.createdDateTimeUtc,
    lastUpdatedDateTimeUtc: state.lastUpdatedDateTimeUtc,
    enrollmentGroupId,
  };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) configuration[k] = v;
  return {
    dialect: "azure-dps",
    endpoint: p.target.endpoint,
    device: { name: p.registrationId, id: deviceId },
    proof: p.attestation === "x509" ? "x509-certificate" : "symmetric-key",
    credentials,
    configuration,
    obtainedAt: now.toISOString(),
    reused: false,
  };
}
