/**
 * Everyware / Kura's serving dialect under the serving contract, on the embedded broker,
 * with the package's own device core (provisionKuraDevice) as the device and MQTT.js for
 * the malformed session.
 */
import {
  kuraServing,
  type KuraRunningService,
  type KuraServeSettings,
} from "../../lib/dialects/kura/serving";
import { ProvisioningError } from "../../lib/model/errors";
import {
  ACCOUNT,
  ACTIVATION_KEY,
  malformedMessage,
  PASSWORD,
  provisionLine,
  rawProvision,
  requestFor,
  WRONG_PASSWORD,
} from "../support/kserve-peers";
import { servingDialectContract, type PeerAnswer } from "./serving-dialect.contract";

/** The request for `clientId`, added unless it is there (a device asking again, a restart). */
async function ensure(s: KuraRunningService, clientId: string): Promise<void> {
  try {
    await s.manage("add", requestFor(clientId));
  } catch (err) {
    if (!(err instanceof ProvisioningError && err.code === "CONFLICT")) throw err;
  }
}

const line = async (p: Promise<string>): Promise<PeerAnswer> => ({ raw: await p });

servingDialectContract<KuraServeSettings, KuraRunningService>({
  name: "kura over embedded MQTT (the package's device core, MQTT.js)",
  dialect: kuraServing,
  settings: async () => ({ accountName: ACCOUNT, mqtt: { mode: "embedded", host: "127.0.0.1", port: 0 } }),
  peer: (service) => {
    const port = service.port as number;
    return {
      valid: async (name) => {
        await ensure(service, name);
        return line(provisionLine(port, name));
      },
      wrongProof: async (name) => {
        await ensure(service, name);
        return line(provisionLine(port, name, { password: WRONG_PASSWORD }));
      },
      malformed: async () => {
        await ensure(service, "contract-malformed");
        return line(
          rawProvision(`mqtt://127.0.0.1:${port}`, "contract-malformed", malformedMessage("bad-1"), "bad-1"),
        );
      },
      flood: async (n) => {
        const names = Array.from({ length: n }, (_, i) => `flood-${i}`);
        for (const name of names) await ensure(service, name);
        return Promise.all(names.map((name) => line(provisionLine(port, name))));
      },
    };
  },
  is: {
    provisioned: (a) => a.raw.startsWith("OK "),
    // MQTT 3.1.1 return code 4: bad user name or password.
    refused: (a) => a.raw.startsWith("DENIED CONNACK 4"),
    failed: (a) => a.raw.startsWith("INVALID 400"),
    // Return code 3: server unavailable, try later.
    throttled: (a) => a.raw.startsWith("BUSY CONNACK 3"),
    // Refused by the flow: the 403 of a provision message refused.
    denied: (a) => a.raw.startsWith("DENIED 403"),
    // Return code 5 (not authorized) without looking at the password.
    locked: (a) => a.raw.startsWith("DENIED CONNACK 5"),
    // A consumed request: return code 5 at CONNECT.
    alreadyProvisioned: (a) => a.raw.startsWith("DENIED CONNACK 5"),
  },
  restartRule: "already-provisioned",
  secrets: [WRONG_PASSWORD, PASSWORD, ACTIVATION_KEY],
  credentialsOf: (a) => (a.raw.startsWith("OK ") ? [a.raw.slice(3)] : []),
  endpoints: (service) => [{ protocol: "tcp", host: "127.0.0.1", port: service.port as number }],
});
