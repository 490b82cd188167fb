/**
 * Microsoft's Node device SDK (azure-iot-provisioning-device with its MQTT or HTTP
 * transport, symmetric-key or X.509 security) registering once, in a child process of its
 * own (it keeps timers and module state), so that a test can compare what it sends with
 * what ours sends. Input: one JSON argument; output: one JSON line, the result or the
 * error. The test CA comes in through NODE_EXTRA_CA_CERTS, set by the parent.
 */
import { ProvisioningDeviceClient } from "azure-iot-provisioning-device";
import { Http } from "azure-iot-provisioning-device-http";
import { Mqtt } from "azure-iot-provisioning-device-mqtt";
import { SymmetricKeySecurityClient } from "azure-iot-security-symmetric-key";
import { X509Security } from "azure-iot-security-x509";

export interface SdkRun {
  transport: "mqtt" | "https";
  /** `host:port` (MQTT) or a bare host (HTTPS: the SDK always uses 443). */
  host: string;
  idScope: string;
  registrationId: string;
  key?: string;
  x509?: { cert: string; key: string };
  payload?: unknown;
}

function main(): void {
  const o = JSON.parse(process.argv[2]) as SdkRun;
  const transport = o.transport === "mqtt" ? new Mqtt() : new Http();
  const security = o.x509
    ? new X509Security(o.registrationId, o.x509)
    : new SymmetricKeySecurityClient(o.registrationId, o.key as string);
  // Two copies of azure-iot-common under node_modules give the SDK's packages types that
  // differ only in where they were declared.
  type Security = Parameters<typeof ProvisioningDeviceClient.create>[3];
  type Transport = Parameters<typeof ProvisioningDeviceClient.create>[2];
  const client = ProvisioningDeviceClient.create(
    o.host,
    o.idScope,
    transport as unknown as Transport,
    security as unknown as Security,
  );
  if (o.payload !== undefined) client.setProvisioningPayload(o.payload as Record<string, unknown>);
  client.register((err, result) => {
    const out = err
      ? { ok: false, name: err.name, message: err.message }
      : { ok: true, result: result as unknown };
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  });
}

main();
