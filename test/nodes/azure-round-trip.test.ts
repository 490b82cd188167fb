/**
 * Azure IoT Hub DPS with the package's own nodes on both sides, in one Node-RED runtime:
 * provision-request registers with a provision-response serving an enrollment group, over
 * MQTT with TLS (the demo certificate and the demo CA, made in the runtime's user directory)
 * and over HTTPS. The device derives its key from the group key, gets the assigned hub and
 * keeps it (a redeploy reuses it), one node onboards a second device by message, custom
 * allocation is the flow's decision, a wrong key is refused with Azure's 401, and no key
 * shows in a log, a status, an audit event or a management answer.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "mocha";
import { deriveDeviceKey } from "../../lib/dialects/azure-dps/sas";
import type { ProvisioningResult } from "../../lib/model/result";
import { MemoryBackend } from "../../lib/stores/memory";
import provisionRequestNode from "../../nodes/provision-request";
import { within } from "../support/events";
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

const GROUP_KEY = "cm91bmQtdHJpcC1ncm91cC1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A=";
const WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWs=";
const SCOPE = "0ne00ROUND1";
const HUB_A = "hub-a.example.azure-devices.net";
const HUB_B = "hub-b.example.azure-devices.net";

type Msg = Record<string, unknown> & { payload: ProvisioningResult & Record<string, unknown> };

describe("nodes: Azure DPS round trip, provision-request against provision-response", () => {
  let store: MemoryBackend | undefined;
  const userDir = mkdtempSync(join(tmpdir(), "azure-rt-"));
  const modules = [
    provisionRequestNode,
    provisionResponseNode,
    fakeStoreConfigModule(() => store),
    catchModule,
  ];
  before(async () => {
    await startServer();
    // After the start: the helper's server takes its settings from here on.
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
  });
  after(async () => {
    helper.settings({});
    await stopServer();
  });

  function flow(serving: Record<string, unknown>, device: Record<string, unknown>): unknown[] {
    return [
      { id: "tab", type: "tab", label: "t" },
      { id: "st", type: "credential-store-config", z: "tab" },
      {
        id: "srv",
        type: "provision-response",
        z: "tab",
        dialect: "azure-dps",
        azureIdScope: SCOPE,
        azureHubs: `${HUB_A}\n${HUB_B}`,
        azureAllocation: "hashed",
        azureEnrollments: [
          {
            kind: "group",
            id: "rt-group",
            attestation: "symmetric-key",
            enabled: true,
            reprovision: "migrate",
          },
        ],
        azureListenHost: "127.0.0.1",
        azureDemoPki: true,
        azureRetryAfter: 0.2,
        rateLimit: 0,
        store: "st",
        wires: [["decisions"], ["audit"]],
        ...serving,
      },
      { id: "decisions", type: "helper", z: "tab" },
      { id: "audit", type: "helper", z: "tab" },
      {
        id: "pr",
        type: "provision-request",
        z: "tab",
        protocol: "azure-dps",
        azureIdScope: SCOPE,
        azureRegistrationId: "rt-device-1",
        azureAttestation: "group-key",
        azureDemoCa: true,
        azurePayload: '{"model":"rt"}',
        timeout: 20,
        retryIntervals: "0.2",
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

  const creds = (deviceKey = GROUP_KEY) => ({
    srv: { azureKeys: JSON.stringify({ "group:rt-group": { primaryKey: GROUP_KEY } }) },
    pr: { azureKey: deviceKey },
  });

  const next = (id: string, what: string) =>
    within<Msg>(30000, what, (resolve) => helper.getNode(id).once("input", resolve));

  async function started(): Promise<TestNode> {
    const srv = helper.getNode("srv") as unknown as TestNode;
    const ready = await statusOf(srv, ["green", "red"]);
    assert.equal(ready.fill, "green", ready.text);
    return srv;
  }

  /** Every place a key could leak to: the log, statuses, warnings, audit events and management answers. */
  function assertNoKey(audits: Msg[]): void {
    const srv = helper.getNode("srv") as unknown as TestNode;
    const pr = helper.getNode("pr") as unknown as TestNode;
    const shown = JSON.stringify([
      nodeHelper.log().args,
      srv.status.args,
      pr.status.args,
      pr.warn.args,
      audits,
    ]);
    for (const secret of [GROUP_KEY, deriveDeviceKey(GROUP_KEY, "rt-device-1"), WRONG_KEY])
      assert.equal(shown.includes(secret), false, "a key in a log, a status or an audit event");
  }

  for (const transport of ["mqtt", "https"] as const)
    it(`over ${transport}: a device registers with a key derived from the group key, keeps its hub, and a second registers by message`, async () => {
      store = new MemoryBackend();
      const port = await freeTcpPort();
      const serving =
        transport === "mqtt"
          ? { azureMqtt: true, azureMqttPort: port, azureHttps: false }
          : { azureMqtt: false, azureHttps: true, azureHttpsPort: port };
      const device = { azureHost: `127.0.0.1:${port}`, azureTransport: transport };
      await helper.load(modules, flow(serving, device), creds());
      await started();
      assert.ok(
        existsSync(join(userDir, "azure-dps-demo-pki", "ca.pem")),
        "the demo CA, in the user directory",
      );
      const audits: Msg[] = [];
      helper.getNode("audit").on("input", (m: Msg) => audits.push(m));

      let got = next("out", "the assignment");
      helper.getNode("pr").receive({});
      const first = (await got).payload;
      assert.equal(first.dialect, "azure-dps");
      assert.equal(first.reused, false);
      assert.equal(first.proof, "symmetric-key");
      assert.equal(first.device.name, "rt-device-1");
      assert.equal(first.device.id, "rt-device-1");
      assert.ok(
        [HUB_A, HUB_B].includes(String(first.configuration.hubId)),
        String(first.configuration.hubId),
      );
      assert.equal(first.configuration.status, "assigned");
      assert.equal(first.configuration.substatus, "initialAssignment");
      assert.equal(first.configuration.enrollmentGroupId, "rt-group");
      assert.equal(first.credentials.type, "SYMMETRIC_KEY");
      assert.equal(first.credentials.key, deriveDeviceKey(GROUP_KEY, "rt-device-1"));
      assert.equal(
        first.credentials.connectionString,
        `HostName=${String(first.configuration.hubId)};DeviceId=rt-device-1;SharedAccessKey=${deriveDeviceKey(GROUP_KEY, "rt-device-1")}`,
      );

      // The store holds it: the next message reuses it, asking nothing.
      got = next("out", "the stored assignment");
      helper.getNode("pr").receive({});
      const again = (await got).payload;
      assert.equal(again.reused, true);
      assert.equal(again.configuration.hubId, first.configuration.hubId);

      // One node, many devices: the registration id by message, its own derived key.
      got = next("out", "the second device");
      helper.getNode("pr").receive({ registrationId: "rt-device-2" });
      const second = (await got).payload;
      assert.equal(second.device.id, "rt-device-2");
      assert.equal(second.credentials.key, deriveDeviceKey(GROUP_KEY, "rt-device-2"));

      // The service kept both registrations.
      const listed = within<Msg>(10000, "the list", (resolve) => {
        const on = (m: Msg) => {
          if (m.topic !== "list") return;
          helper.getNode("audit").off("input", on);
          resolve(m);
        };
        helper.getNode("audit").on("input", on);
      });
      helper.getNode("srv").receive({ topic: "list", payload: {} });
      const ids = (
        (await listed).payload as unknown as { registrations: Array<{ id: string }> }
      ).registrations.map((r) => r.id);
      assert.deepEqual([...ids].sort(), ["rt-device-1", "rt-device-2"]);
      assert.equal(
        audits.filter(
          (m) => m.topic === "audit" && (m.payload as { outcome?: string }).outcome === "provisioned",
        ).length,
        2,
      );
      assertNoKey(audits);
    });

  for (const transport of ["mqtt", "https"] as const)
    it(`over ${transport}: a wrong group key is refused as Azure refuses it, counted, and the key shows nowhere`, async () => {
      store = new MemoryBackend();
      const port = await freeTcpPort();
      const serving =
        transport === "mqtt"
          ? { azureMqtt: true, azureMqttPort: port }
          : { azureMqtt: false, azureHttps: true, azureHttpsPort: port };
      await helper.load(
        modules,
        flow(serving, { azureHost: `127.0.0.1:${port}`, azureTransport: transport }),
        creds(WRONG_KEY),
      );
      await started();
      const audits: Msg[] = [];
      helper.getNode("audit").on("input", (m: Msg) => audits.push(m));
      const refused = next("caught", "the refusal");
      helper.getNode("pr").receive({});
      const msg = await refused;
      assert.equal((msg.error as { code?: string }).code, "DENIED");
      const pr = helper.getNode("pr") as unknown as TestNode;
      await statusOf(pr, ["red"]);
      if (transport === "https") {
        // HTTPS carries Azure's error body: its code reaches the error and the status.
        assert.equal(msg.errorStatus, 401);
        assert.match(String((msg.error as { message?: string }).message), /401002/);
      } else {
        // DPS refuses a bad SAS token at CONNECT: "not authorized".
        assert.equal(msg.errorStatus, "CONNACK 5");
      }
      assert.ok(
        audits.some((m) => m.topic === "audit" && (m.payload as { outcome?: string }).outcome === "refused"),
      );
      assertNoKey(audits);
    });

  it("custom allocation: the flow picks the hub and hands the device a payload", async () => {
    store = new MemoryBackend();
    const port = await freeTcpPort();
    await helper.load(
      modules,
      flow({ azureMqttPort: port, azureAllocation: "custom" }, { azureHost: `127.0.0.1:${port}` }),
      creds(),
    );
    const srv = await started();
    helper.getNode("decisions").once("input", (m: Msg) => {
      const asked = m.payload as unknown as Record<string, unknown>;
      // Azure's webhook request: the device's runtime context with its payload, the linked hubs.
      const ctx = JSON.stringify(asked);
      assert.ok(ctx.includes("rt-device-1") && ctx.includes(HUB_B), ctx);
      srv.receive({
        correlationId: m.correlationId,
        payload: { approve: true, iotHubHostName: HUB_B, payload: { site: "north" } },
      });
    });
    const got = next("out", "the assignment");
    helper.getNode("pr").receive({});
    const r = (await got).payload;
    assert.equal(r.configuration.hubId, HUB_B);
    assert.deepEqual(r.configuration.payload, { site: "north" });
  });
});
