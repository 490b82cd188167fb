/**
 * Azure DPS device side over MQTT: the shared cases (device-cases.ts), and what only
 * MQTT has: the CONNECT, the subscription, the topics and QoS, answers under other
 * request ids, a refused CONNECT, a packet announced larger than the limit.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { attemptAzureDps } from "../../../lib/dialects/azure-dps/device-attempt";
import { prepareAzureDevice } from "../../../lib/dialects/azure-dps/device-prepare";
import type { AzureDeviceSettings } from "../../../lib/dialects/azure-dps/settings";
import {
  mqttUserName,
  operationStatusTopic,
  registerTopic,
  RESPONSE_FILTER,
} from "../../../lib/dialects/azure-dps/wire";
import { ProvisioningError } from "../../../lib/model/errors";
import {
  assigningThenAssigned,
  startAzureResponder,
  type AzureResponder,
} from "../../support/azure-responder";
import { makeTestPki } from "../../support/pki";
import { azureDeviceCases } from "./device-cases";

azureDeviceCases("mqtt");

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/u;

describe("Azure DPS device side: MQTT specifics", () => {
  const pki = makeTestPki("Azure device MQTT specifics");
  let r: AzureResponder;
  let serial = 0;
  before(async () => {
    r = await startAzureResponder({ pki });
  });
  after(async () => {
    await r.stop();
  });

  const run = (regId: string, over: Partial<AzureDeviceSettings> = {}, timeoutMs = 5000) =>
    attemptAzureDps(
      prepareAzureDevice(
        {
          host: r.mqttHost,
          transport: "mqtt",
          idScope: "0ne00C0FFEE",
          attestation: "symmetric-key",
          key: Buffer.alloc(32, 1).toString("base64"),
          ...over,
        },
        regId,
      ),
      { signal: new AbortController().signal, timeoutMs, tls: { ca: pki.caCert } },
    );

  it("CONNECT: MQTT 3.1.1, clean, client id = registration id, the DPS user name, a SAS password; SUBSCRIBE res/# QoS 1", async () => {
    r.script = assigningThenAssigned({ pollsBeforeAssigned: 1 });
    const regId = `mqtt-connect-${++serial}`;
    const from = r.seen.length;
    const subs = r.subscriptions.length;
    const conns = r.connects.length;
    await run(regId);
    assert.equal(r.connects.length - conns, 1, "one connection per attempt");
    const c = r.connects[conns];
    assert.equal(c.clientId, regId);
    assert.equal(c.username, mqttUserName("0ne00C0FFEE", regId));
    assert.equal(c.protocolVersion, 4);
    assert.equal(c.clean, true);
    assert.equal(c.keepalive, 180);
    assert.match(c.password ?? "", /^SharedAccessSignature sr=0ne00C0FFEE\/registrations\//u);
    assert.deepEqual(r.subscriptions.slice(subs), [{ topic: RESPONSE_FILTER, qos: 1 }]);
    const seen = r.seen.slice(from);
    assert.equal(seen.length, 3);
    for (const s of seen) {
      assert.equal(s.qos, 1);
      assert.match(s.rid ?? "", UUID);
    }
    assert.equal(new Set(seen.map((s) => s.rid)).size, 3, "a new rid per request");
    assert.equal(seen[0].topic, registerTopic(seen[0].rid as string));
    assert.equal(seen[1].topic, operationStatusTopic(seen[1].rid as string, seen[1].operationId as string));
    assert.equal(seen[1].body, " ", "a status poll carries one space, as the Node SDK's");
  });

  it("answers under another rid are ignored", async () => {
    const inner = assigningThenAssigned();
    r.script = (req, i) => {
      const reply = inner(req, i);
      return (
        reply && {
          ...reply,
          before: [
            { status: 401, rid: "someone-else", body: { errorCode: 401002, message: "not you" } },
            { status: 200, rid: "another", body: "garbage" },
          ],
        }
      );
    };
    const res = await run(`mqtt-rid-${++serial}`);
    assert.equal(res.configuration.status, "assigned");
  });

  it("a refused CONNECT (5, not authorized) is final DENIED; 3 (unavailable) is BUSY", async () => {
    try {
      r.refuseConnect = 5;
      const e = await run(`mqtt-refused-${++serial}`).then(
        () => assert.fail("resolved"),
        (err: ProvisioningError) => err,
      );
      assert.equal(e.code, "DENIED");
      assert.equal(e.final, true);
      assert.equal(e.status, "CONNACK 5");
      r.refuseConnect = 3;
      const b = await run(`mqtt-refused-${++serial}`).then(
        () => assert.fail("resolved"),
        (err: ProvisioningError) => err,
      );
      assert.equal(b.code, "BUSY");
      assert.equal(b.final, false);
    } finally {
      r.refuseConnect = undefined;
    }
  });
});
