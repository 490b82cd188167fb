/**
 * Everyware / Kura with the package's own nodes on both sides: provision-request asks a
 * provision-response in the same runtime, through the embedded broker and through Debian's
 * mosquitto in attached mode. The device ends up with the account configuration the
 * request hands out, the request is consumed, and neither side shows a secret.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "mocha";
import type { ProvisioningResult } from "../../lib/model/result";
import { MemoryBackend } from "../../lib/stores/memory";
import provisionRequestNode from "../../nodes/provision-request";
import { within } from "../support/events";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { helper as nodeHelper, statusOf, type TestNode } from "../support/node-helper";
import { freeTcpPort } from "../support/ports";
import {
  catchModule,
  fakeStoreConfigModule,
  helper,
  startServer,
  stopServer,
} from "../support/tbdevice-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const provisionResponseNode = require("../../nodes/provision-response") as unknown;

const PROVISION_PASSWORD = "rt-provision-password";
const ACCOUNT_PASSWORD = "rt-account-password";
const ACTIVATION_KEY = "rtActivationKey0123456789abcdefgh";

type Msg = Record<string, unknown> & { payload: ProvisioningResult & Record<string, unknown> };

describe("nodes: Everyware / Kura round trip, provision-request against provision-response", () => {
  let mosquitto: Mosquitto;
  let store: MemoryBackend | undefined;
  const modules = [
    provisionRequestNode,
    provisionResponseNode,
    fakeStoreConfigModule(() => store),
    catchModule,
  ];
  before(async () => {
    await startServer();
    mosquitto = await startMosquitto();
  });
  afterEach(async () => {
    await helper.unload();
    store = undefined;
  });
  after(async () => {
    await mosquitto?.stop();
    await stopServer();
  });

  function flow(
    serving: Record<string, unknown>,
    brokerUrl: string,
    device: Record<string, unknown> = {},
  ): unknown[] {
    return [
      { id: "tab", type: "tab", label: "t" },
      { id: "st", type: "credential-store-config", z: "tab" },
      {
        id: "srv",
        type: "provision-response",
        z: "tab",
        dialect: "kura",
        kuraAccount: "rt-provision",
        kuraRequests: [
          {
            clientId: "RT01",
            username: "RT01-SN9",
            retryMaxAttempts: "3",
            brokerUrl: "mqtts://account.example.com:8883",
            accountName: "rt-account",
            accountUsername: "rt-user",
            accountClientId: "RT01",
            applications: "org.example.rt 2.0.0 https://example.org/rt-2.0.0.dp",
          },
        ],
        store: "st",
        wires: [[], ["audit"]],
        ...serving,
      },
      { id: "audit", type: "helper", z: "tab" },
      {
        id: "pr",
        type: "provision-request",
        z: "tab",
        protocol: "kura",
        kuraEnabled: false,
        kuraBrokerUrl: brokerUrl,
        kuraAccountName: "rt-provision",
        kuraClientId: "RT01",
        kuraSerialNumber: "SN9",
        kuraUsername: "",
        timeout: 10,
        kuraRetryInterval: 0.2,
        retryMax: 1,
        store: "st",
        wires: [["out"]],
        ...device,
      },
      { id: "out", type: "helper", z: "tab" },
      { id: "catcher", type: "catch", z: "tab", scope: ["pr"], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab" },
    ].map((n) => (["tab", "credential-store-config"].includes(n.type) ? n : { x: 0, y: 0, ...n }));
  }

  const creds = {
    srv: {
      kuraSecrets: JSON.stringify({
        RT01: {
          password: PROVISION_PASSWORD,
          activationKey: ACTIVATION_KEY,
          accountPassword: ACCOUNT_PASSWORD,
        },
      }),
    },
    pr: { kuraPassword: PROVISION_PASSWORD, kuraActivationKey: ACTIVATION_KEY },
  };

  const next = (id: string, what: string) =>
    within<Msg>(20000, what, (resolve) => helper.getNode(id).once("input", resolve));

  /** Templates other than namespace.ts's, the same on both sides, as a user matching a given broker sets them. */
  const TOPICS = {
    kuraTopicRequest: "$EDC/{account}/{clientId}/{appId}/PUT/enrol",
    kuraTopicReply: "$EDC/{account}/{clientId}/{appId}/ANSWER/{requestId}",
    kuraTopicCompleted: "$EDC/{account}/{clientId}/{appId}/PUT/enrolled",
  };

  type Setup = { serving: Record<string, unknown>; url: string; device?: Record<string, unknown> };
  const modes: Array<[string, () => Promise<Setup>]> = [
    [
      "the embedded broker",
      async () => {
        const port = await freeTcpPort();
        return {
          serving: { mqtt: "embedded", mqttHost: "127.0.0.1", mqttPort: port },
          url: `mqtt://127.0.0.1:${port}`,
        };
      },
    ],
    [
      "the embedded broker with other topic templates on both sides",
      async () => {
        const port = await freeTcpPort();
        return {
          serving: { mqtt: "embedded", mqttHost: "127.0.0.1", mqttPort: port, ...TOPICS },
          url: `mqtt://127.0.0.1:${port}`,
          device: TOPICS,
        };
      },
    ],
    [
      "mosquitto, attached",
      async () => ({ serving: { mqtt: "attached", attachedUrl: mosquitto.url }, url: mosquitto.url }),
    ],
  ];

  for (const [name, setup] of modes)
    it(`through ${name}: the device gets what the request hands out, and the request is consumed`, async () => {
      store = new MemoryBackend();
      const { serving, url, device } = await setup();
      await helper.load(modules, flow(serving, url, device), creds);
      const srv = helper.getNode("srv") as unknown as TestNode;
      const ready = await statusOf(srv, ["green", "red"]);
      assert.equal(ready.fill, "green", ready.text);
      const audits: Msg[] = [];
      helper.getNode("audit").on("input", (m: Msg) => audits.push(m));

      const got = next("out", "the result");
      helper.getNode("pr").receive({});
      const msg = await got;
      const r = msg.payload;
      assert.equal(r.dialect, "kura");
      assert.equal(r.device.id, "RT01");
      assert.deepEqual(r.configuration.servers, [{ uri: "mqtts://account.example.com:8883" }]);
      assert.equal(r.configuration.accountName, "rt-account");
      assert.deepEqual(r.configuration.applications, [
        { name: "org.example.rt", version: "2.0.0", uri: "https://example.org/rt-2.0.0.dp" },
      ]);
      assert.equal(r.credentials.type, "MQTT_BASIC");
      assert.equal(r.credentials.username, "rt-user");
      assert.equal(r.credentials.password, ACCOUNT_PASSWORD);
      assert.equal((msg.broker as { port?: number }).port, 8883);

      // Consumed once the device confirmed (attached, mosquitto acknowledges the confirmation
      // before the service has it: asked again until the service tells COMPLETED).
      const statusNow = async () => {
        const answer = new Promise<Msg>((resolve) => {
          const on = (m: Msg) => {
            if (m.topic !== "get") return;
            helper.getNode("audit").off("input", on);
            resolve(m);
          };
          helper.getNode("audit").on("input", on);
        });
        srv.receive({ operation: "get", payload: { clientId: "RT01" } });
        return ((await answer).payload as { request?: { status?: string } }).request?.status;
      };
      let status = await statusNow();
      for (let asked = 1; status === "RUNNING" && asked < 500; asked++) status = await statusNow();
      assert.equal(status, "COMPLETED");
      const refused = next("caught", "the refusal");
      helper.getNode("pr").receive({ reprovision: true });
      const code = ((await refused).error as { code?: string }).code;
      assert.ok(code === "DENIED" || code === "NOT_FOUND", `refused as ${code}`);

      assert.ok(
        audits.some(
          (m) => m.topic === "audit" && (m.payload as { outcome?: string }).outcome === "provisioned",
        ),
      );
      const pr = helper.getNode("pr") as unknown as TestNode;
      const shown = JSON.stringify([
        nodeHelper.log().args,
        srv.status.args,
        pr.status.args,
        pr.warn.args,
        audits,
      ]);
      for (const secret of [PROVISION_PASSWORD, ACCOUNT_PASSWORD, ACTIVATION_KEY])
        assert.equal(shown.includes(secret), false, "a secret in a log, a status or an audit event");
    });
});
