import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "mocha";
import { MemoryBackend } from "../../lib/stores/memory";
import { freeTcpPort, freeUdpPort } from "../support/ports";
import { run } from "../support/process";
import { KEY, mqttDevice, nextMessages, request, SECRET } from "../support/tbserve-fixtures";
import {
  backends,
  helper,
  serveHttpNode,
  startServer,
  statusOf,
  stopServer,
  testStoreModule,
  type TestNode,
} from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const responseNode = require("../../nodes/provision-response") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const profileNode = require("../../nodes/provisioning-profile") as unknown;
const nodes = [testStoreModule, profileNode, responseNode];

const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';

interface Msg {
  topic?: string;
  correlationId?: string;
  payload: Record<string, unknown>;
}

function flow(over: Record<string, unknown> = {}, store = ""): Array<Record<string, unknown>> {
  return [
    { id: "tab", type: "tab" },
    {
      id: "prof",
      type: "provisioning-profile",
      name: "fleet",
      strategy: "allow-create",
      credentialsType: "ACCESS_TOKEN",
    },
    ...(store ? [{ id: "store", type: "test-store", name: store }] : []),
    {
      id: "srv",
      z: "tab",
      type: "provision-response",
      profile: "prof",
      mqtt: "embedded",
      mqttHost: "127.0.0.1",
      mqttPort: 0,
      closeAfter: 60,
      store: store ? "store" : "",
      wires: [["decisions"], ["audit"]],
      ...over,
    },
    { id: "decisions", z: "tab", type: "helper" },
    { id: "audit", z: "tab", type: "helper" },
  ];
}

const creds = { prof: { key: KEY, secret: SECRET } };

function collect(id: string): Msg[] {
  const out: Msg[] = [];
  helper.getNode(id).on("input", (m: Msg) => out.push(m));
  return out;
}

function nextInput(id: string, ms = 10000): Promise<Msg> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`nothing on ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once("input", (m: Msg) => {
      clearTimeout(t);
      resolve(m);
    });
  });
}

/** Every log, warn and error text of every node, for the "no secret anywhere" checks. */
function allLogs(...ids: string[]): string {
  const parts: unknown[] = [helper.log().args];
  for (const id of ids) {
    const n = helper.getNode(id);
    if (n) parts.push(n.warn.args, n.error.args, n.log.args, n.status.args);
  }
  return JSON.stringify(parts);
}

function assertNoSecrets(text: string, extra: string[] = []) {
  for (const s of [KEY, SECRET, ...extra])
    assert.ok(!text.includes(s), `a secret reached the logs: ${s.slice(0, 4)}...`);
}

async function mqttPort(srv: TestNode): Promise<number> {
  const s = await statusOf(srv, ["green", "red"]);
  assert.equal(s.fill, "green", s.text);
  return 0;
}

describe("provision-response node", () => {
  before(() => startServer());
  after(() => stopServer());
  afterEach(() => helper.unload());

  it("serves MQTT, HTTP and CoAP, emits audit events, and logs no secret", async () => {
    const port = await freeTcpPort();
    const coapPort = await freeUdpPort();
    await helper.load(nodes, flow({ mqttPort: port, http: true, coap: true, coapPort }), creds);
    const srv = helper.getNode("srv");
    await mqttPort(srv);
    assert.equal((await statusOf(srv, ["green"])).text, "provision-response.status.serving");
    const audits = collect("audit");

    const dev = await mqttDevice(`mqtt://127.0.0.1:${port}`);
    dev.client.publish("/provision/request", request({ deviceName: "node-mqtt" }), { qos: 1 });
    const token = JSON.parse((await nextMessages(dev))[0].payload).credentialsValue as string;
    assert.match(token, /^[A-Za-z0-9]{20}$/);
    dev.client.end(true);

    const { url, server } = await serveHttpNode();
    try {
      const res = await fetch(`${url}/api/v1/provision`, {
        method: "POST",
        body: request({ deviceName: "node-http" }),
      });
      assert.equal(res.status, 200);
      const httpToken = (JSON.parse(await res.text()) as { credentialsValue: string }).credentialsValue;
      const dup = await fetch(`${url}/api/v1/provision`, {
        method: "POST",
        body: request({ deviceName: "node-http" }),
      });
      assert.deepEqual([dup.status, await dup.text()], [200, FAILURE]);

      const coap = await run("coap-client-notls", [
        "-m",
        "post",
        "-e",
        request({ deviceName: "node-coap" }),
        "-B",
        "10",
        `coap://127.0.0.1:${coapPort}/api/v1/provision`,
      ]);
      assert.equal(JSON.parse(coap.stdout.toString()).status, "SUCCESS");

      while (audits.length < 4) await nextInput("audit");
      assert.deepEqual(
        audits.map((m) => [m.topic, m.payload.transport, m.payload.outcome, m.payload.deviceName]),
        [
          ["audit", "mqtt", "provisioned", "node-mqtt"],
          ["audit", "http", "provisioned", "node-http"],
          ["audit", "http", "refused", "node-http"],
          ["audit", "coap", "provisioned", "node-coap"],
        ],
      );
      assertNoSecrets(allLogs("srv", "prof") + JSON.stringify(audits), [token, httpToken]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("removes its HTTP route on close", async () => {
    await helper.load(nodes, flow({ mqtt: "off", http: true }), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    const { url, server } = await serveHttpNode();
    try {
      assert.equal((await fetch(`${url}/api/v1/provision`, { method: "POST", body: "{}" })).status, 200);
      await helper.unload();
      assert.equal((await fetch(`${url}/api/v1/provision`, { method: "POST", body: "{}" })).status, 404);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("lets the flow approve, deny, or time out (deny)", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow({ mqttPort: port, decide: true, decideTimeout: 0.3 }), creds);
    const srv = helper.getNode("srv");
    await statusOf(srv, ["green"]);
    helper.getNode("decisions").on("input", (m: Msg) => {
      const name = m.payload.deviceName;
      if (name === "approve-me")
        srv.receive({
          correlationId: m.correlationId,
          payload: { approve: true, credentials: { token: "from-the-flow" } },
        });
      if (name === "deny-me")
        srv.receive({ correlationId: m.correlationId, payload: { approve: false, reason: "blocked" } });
    });
    const url = `mqtt://127.0.0.1:${port}`;
    const ask = async (deviceName: string) => {
      const dev = await mqttDevice(url);
      dev.client.publish("/provision/request", request({ deviceName, password: "pw-never-shown" }), {
        qos: 1,
      });
      const [m] = await nextMessages(dev);
      dev.client.end(true);
      return m.payload;
    };
    const decisions = collect("decisions");
    assert.equal(
      await ask("approve-me"),
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"from-the-flow"}',
    );
    assert.equal(await ask("deny-me"), FAILURE);
    assert.equal(await ask("nobody-answers"), FAILURE);
    assert.equal(decisions.length, 3);
    assert.ok(decisions.every((d) => typeof d.correlationId === "string" && d.topic === "provision-request"));
    assertNoSecrets(JSON.stringify(decisions), ["pw-never-shown"]);
    // A late or unknown answer is an error the flow can catch.
    srv.receive({ correlationId: decisions[2].correlationId, payload: { approve: true } });
    const err = await new Promise<unknown[]>((resolve) =>
      srv.once("call:error", (call: { args: unknown[] }) => resolve(call.args)),
    );
    assert.match(String(err[0]), /decision-unknown/);
  });

  it("manages the registry by message and keeps it across a redeploy (same store)", async () => {
    backends.set("shared", new MemoryBackend());
    const port = await freeTcpPort();
    const cfg = flow({ mqttPort: port }, "shared");
    cfg[1] = { ...cfg[1], strategy: "check-pre-provisioned" };
    await helper.load(nodes, cfg, creds);
    let srv = helper.getNode("srv");
    await statusOf(srv, ["green"]);
    srv.receive({
      topic: "add",
      payload: { name: "pre-a", credentials: { type: "ACCESS_TOKEN", token: "admin-tok-1" } },
    });
    const added = await nextInput("audit");
    assert.deepEqual([added.topic, added.payload.added], ["add", true]);
    srv.receive({ operation: "add", payload: { name: "pre-b" } });
    await nextInput("audit");

    const url = `mqtt://127.0.0.1:${port}`;
    const ask = async (deviceName: string) => {
      const dev = await mqttDevice(url);
      dev.client.publish("/provision/request", request({ deviceName }), { qos: 1 });
      const [m] = await nextMessages(dev);
      dev.client.end(true);
      return m.payload;
    };
    assert.equal(
      await ask("pre-a"),
      '{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":"admin-tok-1"}',
    );
    assert.equal(await ask("stranger"), FAILURE);

    // Redeploy: a new runtime instance of the node over the same store.
    await helper.unload();
    await helper.load(nodes, cfg, creds);
    srv = helper.getNode("srv");
    await statusOf(srv, ["green"]);
    assert.equal(await ask("pre-a"), FAILURE);
    srv.receive({ topic: "list", payload: {} });
    const listed = await nextInput("audit");
    const devices = listed.payload.devices as Array<{ name: string; state: string }>;
    assert.ok(!("profile" in listed.payload), "a list of every profile names none");
    assert.deepEqual(
      devices.map((d) => [d.name, d.state]),
      [
        ["pre-a", "provisioned"],
        ["pre-b", "pre-provisioned"],
      ],
    );
    assert.ok(!JSON.stringify(listed).includes("admin-tok-1"));
    srv.receive({ topic: "revoke", payload: { name: "pre-a" } });
    assert.equal((await nextInput("audit")).payload.revoked, true);
    srv.receive({ topic: "explode", payload: {} });
    const err = await new Promise<unknown[]>((resolve) =>
      srv.once("call:error", (call: { args: unknown[] }) => resolve(call.args)),
    );
    assert.match(String(err[0]), /operation must be add, revoke or list/);
    assertNoSecrets(allLogs("srv", "prof"), ["admin-tok-1"]);
  });

  it("resolves ${ENV} in the profile's key and secret", async () => {
    process.env.TBSERVE_TEST_KEY = "env-key-123";
    process.env.TBSERVE_TEST_SECRET = "env-secret-456";
    // mocha runs every file in one process: the variables go when the test ends.
    try {
      const port = await freeTcpPort();
      await helper.load(nodes, flow({ mqttPort: port }), {
        prof: { key: "${TBSERVE_TEST_KEY}", secret: "${TBSERVE_TEST_SECRET}" },
      });
      await statusOf(helper.getNode("srv"), ["green"]);
      const dev = await mqttDevice(`mqtt://127.0.0.1:${port}`);
      dev.client.publish(
        "/provision/request",
        request({
          deviceName: "env",
          provisionDeviceKey: "env-key-123",
          provisionDeviceSecret: "env-secret-456",
        }),
        { qos: 1 },
      );
      assert.equal(JSON.parse((await nextMessages(dev))[0].payload).status, "SUCCESS");
      dev.client.end(true);
    } finally {
      delete process.env.TBSERVE_TEST_KEY;
      delete process.env.TBSERVE_TEST_SECRET;
    }
  });

  it("a port of ${NAME} is the tab environment's value; one whose variable is not set is refused, not defaulted", async () => {
    const port = await freeTcpPort();
    const withEnv = flow({ mqttPort: "${TBSERVE_TEST_PORT}" });
    withEnv[0] = {
      id: "tab",
      type: "tab",
      env: [{ name: "TBSERVE_TEST_PORT", value: String(port), type: "str" }],
    };
    await helper.load(nodes, withEnv, creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    const dev = await mqttDevice(`mqtt://127.0.0.1:${port}`);
    dev.client.publish("/provision/request", request({ deviceName: "by-env" }), { qos: 1 });
    assert.equal(JSON.parse((await nextMessages(dev))[0].payload).status, "SUCCESS");
    dev.client.end(true);
    await helper.unload();

    await helper.load(nodes, flow({ mqttPort: "${TBSERVE_NOT_SET_PORT}" }), creds);
    const srv = helper.getNode("srv");
    assert.equal((await statusOf(srv, ["red", "green"])).fill, "red");
    assert.match(JSON.stringify(srv.error.args), /provision-response\.errors\.port-unset/);
    assert.doesNotMatch(JSON.stringify(srv.warn.args), /bad-settings/, "a reference is not out of range");
  });

  it("cuts misbehaving sessions, keeps serving, and logs no secret", async () => {
    const port = await freeTcpPort();
    await helper.load(nodes, flow({ mqttPort: port }), creds);
    const srv = helper.getNode("srv");
    await statusOf(srv, ["green"]);
    const url = `mqtt://127.0.0.1:${port}`;
    const bad = await mqttDevice(url);
    bad.client.publish("v1/devices/me/telemetry", request({ deviceName: "sneaky" }));
    await bad.closed;
    const junk = await mqttDevice(url);
    junk.client.publish("/provision/request", "{{{", { qos: 1 });
    assert.equal((await nextMessages(junk))[0].payload, FAILURE);
    junk.client.end(true);
    const good = await mqttDevice(url);
    good.client.publish("/provision/request", request({ deviceName: "fine" }), { qos: 1 });
    assert.equal(JSON.parse((await nextMessages(good))[0].payload).status, "SUCCESS");
    good.client.end(true);
    const warned = JSON.stringify(srv.warn.args);
    assert.match(warned, /provision-response.warn.refused-first/);
    assertNoSecrets(allLogs("srv", "prof"));
  });

  it("reports a missing profile and a port in use without crashing", async () => {
    await helper.load(nodes, flow({ profile: "" }), creds);
    assert.equal((await statusOf(helper.getNode("srv"), ["red", "green"])).fill, "red");
    await helper.unload();
    const port = await freeTcpPort();
    await helper.load(
      nodes,
      [...flow({ mqttPort: port }), { ...flow({ mqttPort: port })[2], id: "srv2", wires: [[], []] }],
      creds,
    );
    const fills = await Promise.all(
      ["srv", "srv2"].map((id) => statusOf(helper.getNode(id), ["red", "green"])),
    );
    assert.deepEqual(fills.map((f) => f.fill).sort(), ["green", "red"]);
  });
  it("guard settings lock an address out after failed attempts, audited and in the status; repeat window", async () => {
    await helper.load(
      nodes,
      flow({
        mqtt: "off",
        http: true,
        failSlowAfter: 1000,
        failLockAfter: 3,
        failLockMinutes: 5,
        repeatWindow: 60,
      }),
      creds,
    );
    const srv = helper.getNode("srv");
    await statusOf(srv, ["green"]);
    const audits = collect("audit");
    const { url, server } = await serveHttpNode();
    const post = async (body: string) =>
      (
        await fetch(`${url}/api/v1/provision`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        })
      ).text();
    try {
      // The repeat window: the identical request again gets the same credentials.
      const first = await post(request({ deviceName: "node-rep" }));
      assert.match(first, /SUCCESS/);
      assert.equal(await post(request({ deviceName: "node-rep" })), first);
      for (let i = 0; i < 3; i++)
        assert.match(await post(request({ provisionDeviceSecret: `wrong-${i}` })), /NOT_FOUND/);
      assert.equal(await post(request({ deviceName: "after-lock" })), FAILURE);
      const locked = audits.filter((m) => m.payload.outcome === "locked");
      assert.equal(locked.filter((m) => m.payload.transport === "any").length, 2);
      assert.equal(locked.filter((m) => m.payload.transport === "http").length, 1);
      const status = await statusOf(srv, ["yellow"]);
      assert.match(status.text, /locked-out|serving-locked/);
      assert.ok(!JSON.stringify(audits).includes(SECRET));
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
