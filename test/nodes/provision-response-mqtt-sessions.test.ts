/**
 * provision-response's MQTT session settings (issue 8, defects 3 and 14) in a real
 * Node-RED runtime: the dialog's deadlines and slots reach the embedded broker, and the
 * node's one rate limit answers an over-rate device with CONNACK 3 before its request.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "mocha";
import { provision } from "../../lib/dialects/thingsboard/device-dialect";
import type { ProvisioningError as TbError } from "../../lib/model/errors";
import { CONNACK, connectPacket, RawSession } from "../support/mqtt-raw";
import { freeTcpPort } from "../support/ports";
import { KEY, SECRET } from "../support/tbserve-fixtures";
import { helper, startServer, statusOf, stopServer, testStoreModule } from "../support/node-helper";

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
      wires: [[], []],
      ...over,
    },
  ];
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

describe("provision-response node: MQTT sessions", () => {
  before(() => startServer());
  after(() => stopServer());
  afterEach(() => helper.unload());

  it("cuts a silent session (keepalive 0) at the dialog's first-request deadline", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow(port, { mqttFirstRequest: 1, mqttPerRemote: 5, mqttLifetime: 60 }), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    const s = await RawSession.open(port);
    s.write(connectPacket({ clientId: "silent", username: "provision", keepalive: 0 }));
    await s.until((p) => p.some((x) => x.type === CONNACK));
    await bounded(s.closed, 15000, "the silent session closed");
  });

  it("answers a device over the rate with CONNACK 3 (BUSY), having charged the first device once", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow(port, { rateLimit: 0.001, rateBurst: 1 }), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    const input = (deviceName: string) => ({
      endpoint: `mqtt://127.0.0.1:${port}`,
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
      deviceName,
    });
    const once = { timeoutMs: 15000, policy: { intervals: [1], jitter: 0, maxAttempts: 1 } };
    const first = await provision(input("first"), once);
    assert.equal(first.device.name, "first");
    const err = await provision(input("second"), once).then(
      () => undefined,
      (e: TbError) => e,
    );
    assert.equal(err?.code, "BUSY", String(err));
  });
});
