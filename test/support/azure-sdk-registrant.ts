/**
 * Microsoft's own device SDK (azure-iot-provisioning-device with its MQTT or HTTP
 * transport, azure-iot-security-symmetric-key or -x509) registering once, run as a child
 * process by the Azure DPS serving tests (the SDK keeps timers and sockets of its own; a
 * process of its own leaves nothing behind). Argument: one JSON object (SdkRun). Prints
 * one JSON line (SdkOutcome) and exits. The test CA comes in through NODE_EXTRA_CA_CERTS.
 * (./azure-sdk-device.ts is the device side's twin; this one also reports an error's HTTP
 * status and result, which the serving tests check.)
 */
import { ProvisioningDeviceClient } from "azure-iot-provisioning-device";
import { Http } from "azure-iot-provisioning-device-http";
import { Mqtt } from "azure-iot-provisioning-device-mqtt";
import { SymmetricKeySecurityClient } from "azure-iot-security-symmetric-key";
import { X509Security } from "azure-iot-security-x509";

export interface SdkRun {
  /** `host:port` for MQTT; a bare address for HTTPS (the SDK always uses 443). */
  host: string;
  idScope: string;
  transport: "mqtt" | "https";
  registrationId: string;
  /** The device's symmetric key (a group member's derived by the test). */
  key?: string;
  /** X.509: the PEM chain the device sends, and its key. */
  cert?: string;
  certKey?: string;
  payload?: unknown;
}

export type SdkOutcome =
  | { ok: true; result: Record<string, unknown> }
  | { ok: false; error: { name: string; message: string; statusCode?: number; result?: unknown } };

function main(): void {
  const run = JSON.parse(process.argv[2] ?? "{}") as SdkRun;
  const transport = run.transport === "mqtt" ? new Mqtt() : new Http();
  const security =
    run.cert !== undefined
      ? new X509Security(run.registrationId, { cert: run.cert, key: run.certKey as string })
      : new SymmetricKeySecurityClient(run.registrationId, run.key as string);
  const client = ProvisioningDeviceClient.create(
    run.host,
    run.idScope,
    transport as never,
    security as never,
  );
  if (run.payload !== undefined) client.setProvisioningPayload(run.payload as never);
  client.register((err, result) => {
    let out: SdkOutcome;
    if (err) {
      const e = err as Error & {
        response?: { statusCode?: number };
        result?: unknown;
        transportObject?: unknown;
      };
      out = {
        ok: false,
        error: { name: e.name, message: e.message, statusCode: e.response?.statusCode, result: e.result },
      };
    } else out = { ok: true, result: result as unknown as Record<string, unknown> };
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  });
}

main();
