/**
 * The device-side contract (device-dialect.contract.ts) for Azure DPS, over MQTT and over
 * HTTPS, against the DPS-like responder (test/support/azure-responder.ts): one responder
 * per peer kind, each with its script.
 */
import { once } from "node:events";
import { azureDpsDialect } from "../../lib/dialects/azure-dps/device-dialect";
import type { AzureDeviceSettings } from "../../lib/dialects/azure-dps/settings";
import {
  assigningThenAssigned,
  issueServerCert,
  randomLoopback,
  startAzureResponder,
  type Script,
} from "../support/azure-responder";
import { makeTestPki } from "../support/pki";
import { deviceDialectContract, type PeerKind } from "./device-dialect.contract";

const pki = makeTestPki("Contract Azure");
const stranger = makeTestPki("Contract Azure stranger");
const KEY = Buffer.alloc(32, 7).toString("base64");

const SCRIPTS: Record<PeerKind, () => Script> = {
  success: () => assigningThenAssigned(),
  refusal: () => () => ({
    status: 401,
    body: {
      errorCode: 401002,
      trackingId: "t",
      message: "The device is unauthorized for service.",
      timestampUtc: "",
    },
  }),
  garbage: () => () => ({ status: 200, body: "<html>not DPS</html>" }),
  silence: () => () => undefined,
  "tls-unknown-ca": () => assigningThenAssigned(),
};

for (const transport of ["mqtt", "https"] as const) {
  deviceDialectContract({
    name: `Azure DPS over ${transport === "mqtt" ? "MQTT" : "HTTPS"} (DPS-like responder)`,
    dialect: azureDpsDialect,
    kinds: ["success", "refusal", "garbage", "silence", "tls-unknown-ca"],
    refusal: { code: "DENIED", status: 401 },
    answersAgain: true,
    start: async (kind) => {
      const ip = randomLoopback();
      const responder = await startAzureResponder({
        pki,
        ip,
        serverTls: kind === "tls-unknown-ca" ? issueServerCert(stranger, ip) : undefined,
      });
      responder.script = SCRIPTS[kind]();
      const settings: AzureDeviceSettings = {
        host: transport === "mqtt" ? responder.mqttHost : responder.httpsHost,
        transport,
        idScope: "0ne00000001",
        attestation: "symmetric-key",
        key: KEY,
      };
      return {
        settings,
        tls: { ca: pki.caCert },
        requests: () => responder.requests("register").length,
        nextRequest: () => once(responder, "request").then(() => undefined),
        stop: () => responder.stop(),
      };
    },
  });
}
