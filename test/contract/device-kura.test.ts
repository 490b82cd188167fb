/**
 * The device-side contract (device-dialect.contract.ts) for Everyware / Kura provisioning,
 * against Debian's mosquitto and a responder that plays the service with the namespace's
 * own builders (test/support/kura-responder.ts): each peer kind is an account of its own
 * on one broker, so that each responder answers only its own devices.
 */
import { once } from "node:events";
import { connectAsync } from "mqtt";
import { kuraDialect, type KuraDialectSettings } from "../../lib/dialects/kura/device-dialect";
import { KuraResponder, RESPONDER_FILTER, type Behaviour } from "../support/kura-responder";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { makeTestPki } from "../support/pki";
import { deviceDialectContract, type PeerKind } from "./device-dialect.contract";

const pki = makeTestPki("Contract Kura");

const BEHAVIOUR: Record<PeerKind, Behaviour> = {
  success: "answer",
  refusal: "refuse",
  garbage: "garbage",
  silence: "silent",
  "tls-unknown-ca": "answer",
};

let broker: Promise<Mosquitto> | undefined;
let users = 0;

deviceDialectContract({
  name: "Everyware / Kura over MQTT (mosquitto)",
  dialect: kuraDialect,
  kinds: ["success", "refusal", "garbage", "silence", "tls-unknown-ca"],
  // The service's "wrong activation key" (response.code 403, this package's own code).
  refusal: { code: "DENIED", status: 403 },
  answersAgain: true,
  start: async (kind) => {
    // mosquitto without a password file takes any user name: the contract makes up client ids.
    broker ??= startMosquitto({ tls: { certPath: pki.serverCertPath, keyPath: pki.serverKeyPath } });
    const mosquitto = await broker;
    users++;
    const client = await connectAsync(mosquitto.url, { protocolVersion: 4, reconnectPeriod: 0 });
    const account = `contract-${kind}`;
    await client.subscribeAsync(RESPONDER_FILTER, { qos: 1 });
    const responder = new KuraResponder(client, () => ({
      certificateChain: [pki.caCert],
      configuration: {
        brokerUrl: "mqtts://account.example.com:8883",
        accountName: "acme",
        username: "acme-device",
        password: `account-${Math.random().toString(36).slice(2)}`,
        clientId: "",
      },
      applications: [],
    }));
    responder.account = account;
    responder.behaviour = BEHAVIOUR[kind];
    const settings: KuraDialectSettings = {
      brokerUrl: kind === "tls-unknown-ca" ? mosquitto.tlsUrl! : mosquitto.url,
      accountName: account,
      password: "provision-pass",
    };
    return {
      settings,
      requests: () => responder.requests.length,
      nextRequest: () => once(responder, "request").then(() => undefined),
      stop: async () => {
        await client.endAsync();
        if (--users === 0) await mosquitto.stop();
      },
    };
  },
});
