/**
 * provision-response's "PROXY protocol" checkbox in a real Node-RED runtime: ticked, the
 * embedded MQTT listener reads a PROXY header and the audit names the device's address
 * from it; a flow saved before the option (no field) keeps it off, so a header is
 * garbage to MQTT there.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "mocha";
import {
  CONNACK,
  connectPacket,
  publishPacket,
  RawSession,
  SUBACK,
  subscribePacket,
} from "../support/mqtt-raw";
import { freeTcpPort } from "../support/ports";
import { proxyV2 } from "../support/proxy-header";
import { KEY, request, SECRET } from "../support/tbserve-fixtures";
import {
  helper,
  nextInput,
  startServer,
  statusOf,
  stopServer,
  testStoreModule,
} from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const responseNode = require("../../nodes/provision-response") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const profileNode = require("../../nodes/provisioning-profile") as unknown;
const nodes = [testStoreModule, profileNode, responseNode];
const creds = { prof: { key: KEY, secret: SECRET } };

function flow(port: number, over: Record<string, unknown>): Array<Record<string, unknown>> {
  return [
    { id: "tab", type: "tab" },
    {
      id: "prof",
      type: "provisioning-profile",
      name: "fleet",
      strategy: "allow-create",
      credentialsType: "ACCESS_TOKEN",
    },
    {
      id: "srv",
      z: "tab",
      type: "provision-response",
      profile: "prof",
      mqtt: "embedded",
      mqttHost: "127.0.0.1",
      mqttPort: port,
      wires: [[], ["audit"]],
      ...over,
    },
    { id: "audit", z: "tab", type: "helper" },
  ];
}

describe("provision-response node: PROXY protocol", () => {
  before(() => startServer());
  after(() => stopServer());
  afterEach(() => helper.unload());

  it("ticked: a device behind the proxy is audited from the address in its PROXY header", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow(port, { mqttProxyProtocol: true }), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    const audit = nextInput<{ payload: { remote?: string; outcome?: string } }>(helper.getNode("audit"));
    const s = await RawSession.open(port);
    try {
      s.write(
        proxyV2({ src: "192.0.2.9", sport: 50000 }),
        connectPacket({ clientId: "pp", username: "provision" }),
      );
      await s.until((p) => p.some((x) => x.type === CONNACK));
      assert.equal(s.packets.find((x) => x.type === CONNACK)?.body[1], 0);
      s.write(subscribePacket(1, "/provision/response", 0));
      await s.until((p) => p.some((x) => x.type === SUBACK));
      s.write(publishPacket("/provision/request", request({ deviceName: "behind-proxy" })));
      const m = await audit;
      assert.equal(m.payload.outcome, "provisioned");
      assert.equal(m.payload.remote, "192.0.2.9");
    } finally {
      s.destroy();
    }
  });

  it("a flow saved before the option: off, a PROXY header is not MQTT and the connection is closed", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow(port, {}), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    const s = await RawSession.open(port);
    s.write(proxyV2({ src: "192.0.2.9" }), connectPacket({ clientId: "pp", username: "provision" }));
    await s.closed;
    assert.ok(!s.packets.some((x) => x.type === CONNACK));
  });
});
