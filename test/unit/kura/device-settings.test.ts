/**
 * provision-request's Everyware / Kura mapping (nodes/shared/kura-device-settings.ts):
 * what the core MQTT nodes get as msg.broker, the retry policy from retry-interval and
 * retry-max-attempts, and the identity the provision message carries.
 */
import assert from "node:assert/strict";
import { release } from "node:os";
import { describe, it } from "mocha";
import type { ProvisioningResult } from "../../../lib/model/result";
import { ProvisioningError } from "../../../lib/model/errors";
import {
  kuraIdentityOf,
  kuraPolicyOf,
  kuraReasonOf,
  mqttBrokerOf,
} from "../../../nodes/shared/kura-device-settings";

function result(uri: string | undefined): ProvisioningResult {
  return {
    dialect: "kura",
    endpoint: "mqtts://p.example.com:8883",
    device: { name: "D1", id: "D1" },
    proof: "provision-request",
    credentials: { type: "MQTT_BASIC", clientId: "acme-D1", username: "u", password: "p" },
    configuration: uri === undefined ? {} : { servers: [{ uri }] },
    obtainedAt: new Date(0).toISOString(),
    reused: false,
  };
}

describe("kura: provision-request's settings mapping", () => {
  it("msg.broker: the account broker's URL with its port, TLS for mqtts and ssl, MQTT 3.1.1, force", async () => {
    const of = (uri: string) => mqttBrokerOf(result(uri)) as Record<string, unknown>;
    assert.deepEqual(of("mqtts://account.example.com"), {
      broker: "mqtts://account.example.com:8883",
      port: 8883,
      clientid: "acme-D1",
      username: "u",
      password: "p",
      usetls: true,
      verifyservercert: true,
      protocolVersion: 4,
      force: true,
    });
    assert.equal(of("ssl://a.example.com:8884").broker, "mqtts://a.example.com:8884");
    assert.equal(of("ssl://a.example.com:8884").usetls, true);
    assert.equal(of("tcp://10.0.0.1").broker, "mqtt://10.0.0.1:1883");
    assert.equal(of("tcp://10.0.0.1").usetls, false);
    assert.equal(of("mqtt://[::1]:1884").broker, "mqtt://[::1]:1884");
    assert.equal(of("mqtts://[::1]").broker, "mqtts://[::1]:8883");
    assert.equal(of("wss://a.example.com/mqtt").broker, "wss://a.example.com:443/mqtt");
    assert.equal(mqttBrokerOf(result(undefined)), undefined, "no server, nothing to connect to");
    assert.equal(mqttBrokerOf(result("not a url")), undefined);
  });

  it("retry-interval is a fixed wait without jitter; retry-max-attempts is the attempts in all (-1: until it succeeds)", async () => {
    assert.deepEqual(kuraPolicyOf({ kuraRetryInterval: "30", retryMax: "5" } as never), {
      intervals: [30],
      jitter: 0,
      maxAttempts: 5,
    });
    assert.deepEqual(kuraPolicyOf({} as never), { intervals: [10], jitter: 0, maxAttempts: -1 });
  });

  it("the identity: the dialog's model, serial, versions and application ids, and the machine's own", async () => {
    const id = kuraIdentityOf({
      kuraModelName: "Gateway X",
      kuraSerialNumber: "SN9",
      kuraFirmwareVersion: "1.2",
      kuraApplicationIds: " CONF-V1, DEPLOY-V2 ,",
    } as never);
    assert.equal(id.modelName, "Gateway X");
    assert.equal(id.serialNumber, "SN9");
    assert.equal(id.firmwareVersion, "1.2");
    assert.deepEqual(id.applicationIds, ["CONF-V1", "DEPLOY-V2"]);
    assert.equal(id.osVersion, release());
    assert.match(id.availableProcessors ?? "", /^\d+$/);
    const bare = kuraIdentityOf({} as never);
    assert.equal(bare.modelName, "Node-RED");
    assert.equal(bare.applicationIds, undefined);
    assert.equal(bare.serialNumber, undefined);
  });

  it("the status's reasons: no provision request (CONNACK, 404), wrong activation key, untrusted chain", async () => {
    const e = (
      code: "DENIED" | "NOT_FOUND" | "TLS" | "TIMEOUT" | "CONNECT",
      status?: string | number,
      m = "x",
    ) => new ProvisioningError(code, m, { status });
    assert.equal(kuraReasonOf(e("DENIED", "CONNACK 5")), "no-request");
    assert.equal(kuraReasonOf(e("NOT_FOUND", 404)), "no-request");
    assert.equal(kuraReasonOf(e("DENIED", 403)), "wrong-key");
    assert.equal(
      kuraReasonOf(e("TLS", "CHAIN_UNTRUSTED", "ca-authentication refused the answer")),
      "untrusted-chain",
    );
    assert.equal(kuraReasonOf(e("TLS", undefined, "handshake")), undefined);
    assert.equal(kuraReasonOf(e("TIMEOUT")), "no-answer");
    assert.equal(kuraReasonOf(e("CONNECT")), undefined);
  });
});
