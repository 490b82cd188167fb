/**
 * provision-response with the Everyware / Kura dialect: a request made in the dialog
 * (its secrets as credentials), a device provisioned on the embedded broker with the
 * package's own device core, management by message, and no secret in logs or messages.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "mocha";
import {
  ACCOUNT,
  accountPassword,
  ACTIVATION_KEY,
  device,
  PASSWORD,
  provisionLine,
  requestFor,
  usernameOf,
  WRONG_PASSWORD,
} from "../support/kserve-peers";
import { connectAsync } from "mqtt";
import { provisionKuraDevice } from "../../lib/dialects/kura/device";
import { freeTcpPort } from "../support/ports";
import { helper, startServer, statusOf, stopServer, testStoreModule } from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const responseNode = require("../../nodes/provision-response") as unknown;
const nodes = [testStoreModule, responseNode];

interface Msg {
  topic?: string;
  payload: Record<string, unknown>;
}

function flow(port: number, over: Record<string, unknown> = {}): Array<Record<string, unknown>> {
  return [
    { id: "tab", type: "tab" },
    {
      id: "srv",
      z: "tab",
      type: "provision-response",
      dialect: "kura",
      kuraAccount: ACCOUNT,
      kuraRequests: [
        {
          clientId: "node-dev-1",
          username: usernameOf("node-dev-1"),
          retryMaxAttempts: "3",
          brokerUrl: "mqtt://account-broker.example:1883",
          accountName: "ACME",
          accountUsername: "acme-node-dev-1",
          accountClientId: "node-dev-1",
          applications: "org.example.app 1.0.0 https://example.org/app.dp",
        },
      ],
      mqtt: "embedded",
      mqttHost: "127.0.0.1",
      mqttPort: port,
      wires: [["decisions"], ["audit"]],
      ...over,
    },
    { id: "decisions", z: "tab", type: "helper" },
    { id: "audit", z: "tab", type: "helper" },
  ];
}

const creds = {
  srv: {
    kuraSecrets: JSON.stringify({
      "node-dev-1": {
        password: PASSWORD,
        activationKey: ACTIVATION_KEY,
        accountPassword: accountPassword("node-dev-1"),
      },
    }),
  },
};

describe("provision-response node: Everyware / Kura", () => {
  before(() => startServer());
  after(() => stopServer());
  afterEach(() => helper.unload());

  it("provisions a dialog request on the embedded broker, manages by message, and shows no secret", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow(port), creds);
    const srv = helper.getNode("srv");
    const s = await statusOf(srv, ["green", "red"]);
    assert.equal(s.fill, "green", s.text);
    const audit = helper.getNode("audit");
    const seen: Msg[] = [];
    audit.on("input", (m: Msg) => seen.push(m));
    /** The next message on the second output with this topic (audit events and management results share it). */
    const next = (topic: string) =>
      new Promise<Msg>((resolve) => {
        const on = (m: Msg) => {
          if (m.topic !== topic) return;
          audit.off("input", on);
          resolve(m);
        };
        audit.on("input", on);
      });

    const first = next("audit");
    assert.equal(await provisionLine(port, "node-dev-1"), `OK ${accountPassword("node-dev-1")}`);
    assert.equal((await first).payload.outcome, "provisioned");
    assert.match(await provisionLine(port, "node-dev-1", { password: WRONG_PASSWORD }), /^DENIED CONNACK 5/);

    const added = next("add");
    srv.receive({ operation: "add", payload: requestFor("msg-dev-1", { activationKey: "generate" }) });
    const addedMsg = await added;
    assert.equal(addedMsg.topic, "add");
    const key = addedMsg.payload.activationKey as string;
    assert.match(key, /^[A-Za-z0-9]{32}$/);
    assert.match(await provisionLine(port, "msg-dev-1", { activationKey: key }), /^OK /);

    const listed = next("list");
    srv.receive({ operation: "list" });
    const list = (await listed).payload as { requests: Array<{ clientId: string; status: string }> };
    assert.deepEqual(
      list.requests.map((r) => [r.clientId, r.status]),
      [
        ["msg-dev-1", "COMPLETED"],
        ["node-dev-1", "COMPLETED"],
      ],
    );
    const text = JSON.stringify([
      helper.log().args,
      srv.warn.args,
      srv.error.args,
      srv.status.args,
      seen.filter((m) => m.topic !== "add"),
    ]);
    for (const secret of [PASSWORD, WRONG_PASSWORD, ACTIVATION_KEY, key, accountPassword("node-dev-1")])
      assert.ok(!text.includes(secret), `a secret reached the logs or messages: ${secret.slice(0, 4)}...`);
  });

  it("with the demo account broker, the provisioned device reconnects there with what it received", async () => {
    const port = await freeTcpPort();
    const accountPort = await freeTcpPort();
    await helper.load(
      nodes,
      flow(port, { kuraAccountBroker: true, kuraAccountBrokerPort: accountPort }),
      creds,
    );
    const srv = helper.getNode("srv");
    const s = await statusOf(srv, ["green", "red"]);
    assert.equal(s.fill, "green", s.text);
    const r = await provisionKuraDevice(device(port, "node-dev-1"), { timeoutMs: 15000 });
    const c = r.credentials;
    const dev = await connectAsync(`mqtt://127.0.0.1:${accountPort}`, {
      protocolVersion: 4,
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      reconnectPeriod: 0,
    });
    try {
      await dev.publishAsync(`$EDC/ACME/${c.clientId as string}/MQTT/BIRTH`, Buffer.from("x"), { qos: 1 });
    } finally {
      dev.end(true);
    }
  });

  it("resolves ${NAME} references in a dialog request's fields and secrets from the environment", async () => {
    process.env.KSERVE_TEST_CLIENT = "env-dev-1";
    process.env.KSERVE_TEST_PASS = "env-provision-pass";
    try {
      const port = await freeTcpPort();
      const rows = [
        {
          clientId: "${KSERVE_TEST_CLIENT}",
          username: "${KSERVE_TEST_CLIENT}-SN1",
          brokerUrl: "mqtt://a.example",
        },
      ];
      const secrets = {
        "${KSERVE_TEST_CLIENT}": { password: "${KSERVE_TEST_PASS}", accountPassword: "acct-pw" },
      };
      await helper.load(nodes, flow(port, { kuraRequests: rows }), {
        srv: { kuraSecrets: JSON.stringify(secrets) },
      });
      const s = await statusOf(helper.getNode("srv"), ["green", "red"]);
      assert.equal(s.fill, "green", JSON.stringify(helper.getNode("srv").error.args));
      assert.equal(
        await provisionLine(port, "env-dev-1", { password: "env-provision-pass", activationKey: undefined }),
        "OK acct-pw",
      );
    } finally {
      delete process.env.KSERVE_TEST_CLIENT;
      delete process.env.KSERVE_TEST_PASS;
    }
  });

  it("refuses to start without MQTT, with a sentence", async () => {
    await helper.load(nodes, flow(0, { mqtt: "off" }), creds);
    const srv = helper.getNode("srv");
    assert.equal((await statusOf(srv, ["red"])).fill, "red");
    assert.match(JSON.stringify(srv.error.args), /kura-mqtt-off|needs MQTT/);
  });
});
