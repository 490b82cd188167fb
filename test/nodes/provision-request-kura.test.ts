/**
 * provision-request with protocol "kura" in a real Node-RED runtime, against Debian's
 * mosquitto (a password file: the provision broker refuses a CONNECT without a provision
 * request) and the test's responder playing the service (test/support/kura-responder.ts).
 * The account broker is the same mosquitto under the account's user, and the core
 * `mqtt in` node connects to it with what the node sends.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "mocha";
import { connectAsync } from "mqtt";
import { DENIED_AT_CONNECT } from "../../lib/dialects/kura/device";
import type { ProvisioningResult } from "../../lib/model/result";
import { MemoryBackend } from "../../lib/stores/memory";
import type { StoreBackend } from "../../lib/stores/backend";
import provisionRequestNode from "../../nodes/provision-request";
import { within } from "../support/events";
import { KuraResponder, RESPONDER_FILTER } from "../support/kura-responder";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { makeTestPki, type TestPki } from "../support/pki";
import {
  catchModule,
  fakeStoreConfigModule,
  helper,
  startServer,
  stopServer,
  tlsConfigModule,
  type TestNode,
} from "../support/tbdevice-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const mqttModule: unknown = require("@node-red/nodes/core/network/10-mqtt.js");

const PASSWORD = "provision-pass";
const ACCOUNT_PASSWORD = "account-pass-7f3a";
const KEY = "Zq7nP4kVt2xWb9sLc3mRd8yFh5jGa6eU";

type Msg = Record<string, unknown> & { payload: ProvisioningResult };

/** The part of supertest (node-red-node-test-helper's request() on httpAdmin) used here. */
interface AdminAgent {
  get(path: string): { expect(status: number): Promise<{ body: unknown }> };
}

describe("nodes/provision-request, protocol Everyware / Kura", () => {
  let store: StoreBackend | undefined;
  const modules = [provisionRequestNode, fakeStoreConfigModule(() => store), tlsConfigModule, catchModule];
  let pki: TestPki;
  let foreign: TestPki;
  let broker: Mosquitto;
  let passwd: string;
  let responder: KuraResponder;

  before(async () => {
    await startServer();
    pki = makeTestPki("Kura node account");
    foreign = makeTestPki("Kura node someone else");
    passwd = join(mkdtempSync(join(tmpdir(), "kura-node-")), "passwd");
    execFileSync("mosquitto_passwd", ["-b", "-c", passwd, "service", "service-pass"]);
    execFileSync("mosquitto_passwd", ["-b", passwd, "KURADEV01-SN1", PASSWORD]);
    execFileSync("mosquitto_passwd", ["-b", passwd, "device", PASSWORD]);
    execFileSync("mosquitto_passwd", ["-b", passwd, "acme-device", ACCOUNT_PASSWORD]);
    broker = await startMosquitto({ extraConfig: `allow_anonymous false\npassword_file ${passwd}` });
    const client = await connectAsync(broker.url, {
      username: "service",
      password: "service-pass",
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await client.subscribeAsync(RESPONDER_FILTER, { qos: 1 });
    responder = new KuraResponder(
      client,
      () => ({
        certificateChain: [pki.caCert],
        configuration: {
          // The account broker: the same mosquitto, under the account's user.
          brokerUrl: broker.url,
          accountName: "acme",
          username: "acme-device",
          password: ACCOUNT_PASSWORD,
          clientId: "acme-KURADEV01",
        },
        applications: [{ name: "telemetry", version: "2.1.0", uri: "https://repo.example.com/t.dp" }],
      }),
      [foreign.caCert],
    );
  });

  afterEach(async () => {
    await helper.unload();
    store = undefined;
    responder.behaviour = "answer";
    responder.activationKey = undefined;
  });

  after(async () => {
    await responder?.client.endAsync();
    await broker?.stop();
    await stopServer();
  });

  function prNode(over: Record<string, unknown> = {}) {
    return {
      id: "pr",
      type: "provision-request",
      z: "tab",
      protocol: "kura",
      kuraEnabled: false,
      kuraBrokerUrl: broker.url,
      kuraAccountName: "acme-provision",
      kuraClientId: "KURADEV01",
      kuraSerialNumber: "SN1",
      kuraUsername: "device",
      timeout: 10,
      kuraRetryInterval: 0.05,
      retryMax: 1,
      wires: [["out"]],
      ...over,
    };
  }

  function flow(pr: Record<string, unknown>, extra: unknown[] = []): unknown[] {
    return [
      { id: "tab", type: "tab", label: "t" },
      pr,
      { id: "out", type: "helper", z: "tab" },
      { id: "catcher", type: "catch", z: "tab", scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab" },
      { id: "st", type: "credential-store-config", z: "tab" },
      ...extra,
    ].map((n) =>
      ["tab", "credential-store-config", "tls-config", "mqtt-broker"].includes((n as { type: string }).type)
        ? n
        : { x: 0, y: 0, ...(n as object) },
    );
  }

  const creds = (more: Record<string, string> = {}) => ({ pr: { kuraPassword: PASSWORD, ...more } });

  const next = (node: TestNode, what: string) =>
    within<Msg>(20000, what, (resolve) => node.once("input", resolve));

  function statuses(node: TestNode): Array<{ fill?: string; text?: string }> {
    const seen: Array<{ fill?: string; text?: string }> = [];
    node.on("call:status", (call: { args: unknown[] }) => seen.push(call.args[0] as { text?: string }));
    return seen;
  }

  function statusWith(node: TestNode, text: string): Promise<void> {
    return within(20000, `status ${text}`, (resolve: (v: void) => void) => {
      const on = (call: { args: unknown[] }) => {
        if ((call.args[0] as { text?: string }).text !== text) return;
        node.off("call:status", on);
        resolve();
      };
      node.on("call:status", on);
    });
  }

  function assertNoSecret(texts: Array<{ text?: string }>): void {
    for (const s of texts)
      for (const secret of [PASSWORD, ACCOUNT_PASSWORD, KEY])
        assert.ok(!String(s.text).includes(secret), "a secret in the status");
  }

  it("round trip at deploy: the neutral result and msg.broker, which a core mqtt in node connects with", async () => {
    store = new MemoryBackend();
    const mqttBroker = {
      id: "mb",
      type: "mqtt-broker",
      z: "tab",
      broker: "127.0.0.1",
      port: "1",
      clientid: "",
      autoConnect: false,
      usetls: false,
      protocolVersion: "4",
      keepalive: "60",
      cleansession: true,
      autoUnsubscribe: true,
    };
    const mqttIn = {
      id: "min",
      type: "mqtt in",
      z: "tab",
      topic: "",
      qos: "1",
      datatype: "auto-detect",
      broker: "mb",
      inputs: 1,
      wires: [[]],
    };
    await helper.load(
      [...modules, mqttModule],
      flow(
        prNode({
          kuraEnabled: true,
          kuraUsername: "",
          store: "st",
          kuraActivationKey: undefined,
          wires: [["out", "min"]],
        }),
        [mqttBroker, mqttIn],
      ),
      creds({ kuraActivationKey: KEY }),
    );
    const texts = statuses(helper.getNode("pr"));
    const connected = statusWith(helper.getNode("min"), "node-red:common.status.connected");
    const msg = await next(helper.getNode("out"), "the result");
    const r = msg.payload;
    assert.equal(r.dialect, "kura");
    assert.equal(r.proof, "provision-request");
    assert.equal(r.reused, false);
    assert.equal(r.device.id, "KURADEV01");
    assert.deepEqual(r.configuration.servers, [{ uri: broker.url }]);
    assert.deepEqual(r.credentials, {
      type: "MQTT_BASIC",
      clientId: "acme-KURADEV01",
      username: "acme-device",
      password: ACCOUNT_PASSWORD,
      caCertificates: [pki.caCert],
    });
    assert.equal(msg.action, "connect");
    assert.deepEqual(msg.broker, {
      broker: broker.url,
      port: broker.port,
      clientid: "acme-KURADEV01",
      username: "acme-device",
      password: ACCOUNT_PASSWORD,
      usetls: false,
      verifyservercert: false,
      protocolVersion: 4,
      force: true,
    });
    // Everyware's default user name (client id, dash, serial number) was let in by mosquitto.
    const seen = responder.requests.at(-1)!.request;
    assert.equal(seen.requesterClientId, "KURADEV01");
    assert.equal(seen.activationKey, KEY);
    assert.equal(seen.identity.serialNumber, "SN1");
    assert.equal(seen.identity.modelName, "Node-RED");
    assert.ok(seen.identity.osVersion, "the OS version from node:os");
    // The core node connected to the account broker (mosquitto refuses other credentials).
    await connected;
    assert.deepEqual(
      texts.map((s) => s.text).filter((t) => String(t).startsWith("provision-request.")),
      [
        "provision-request.kura.status.connecting",
        "provision-request.kura.status.requesting",
        "provision-request.kura.status.provisioned",
      ],
    );
    assertNoSecret(texts);
    assert.ok((await store.get("kura/KURADEV01"))?.value, "the result is stored");
    // The dialog's read-only "provisioned", from the admin API.
    const admin = (helper as unknown as { request(): AdminAgent }).request();
    const state = await admin.get("/provision-request/pr/kura-state").expect(200);
    assert.deepEqual(state.body, { provisioned: true, obtainedAt: r.obtainedAt });
    await admin.get("/provision-request/nope/kura-state").expect(404);
  });

  it("a refused CONNECT is DENIED with Everyware's sentence, shown as refused: no provision request", async () => {
    await helper.load(modules, flow(prNode({ kuraUsername: "nobody" })), creds());
    const texts = statuses(helper.getNode("pr"));
    const caught = next(helper.getNode("caught"), "the failure");
    helper.getNode("pr").receive({});
    const m = await caught;
    const error = m.error as { code?: string; message?: string };
    assert.equal(error.code, "DENIED");
    assert.ok(error.message?.includes(DENIED_AT_CONNECT), error.message);
    assert.equal(m.errorStatus, "CONNACK 5");
    assert.equal(texts.at(-1)?.text, "provision-request.kura.status.refused");
    assertNoSecret(texts);
  });

  it("a broker URL naming an environment variable that is not set is CONFIG, naming it", async () => {
    await helper.load(modules, flow(prNode({ kuraBrokerUrl: "${KDEV_NO_SUCH_BROKER}" })), creds());
    const caught = next(helper.getNode("caught"), "the failure");
    helper.getNode("pr").receive({});
    const error = (await caught).error as { code?: string; message?: string };
    assert.equal(error.code, "CONFIG");
    assert.match(String(error.message), /provision-request\.kura\.errors\.env-unset/);
  });

  it("a broker URL with ${NAME} inside takes its port from the tab's environment; one not set is CONFIG", async () => {
    const port = new URL(broker.url).port;
    const withEnv = (url: string) => {
      const f = flow(prNode({ kuraBrokerUrl: url })) as Array<Record<string, unknown>>;
      f[0] = { ...f[0], env: [{ name: "KURA_TEST_PORT", value: port, type: "str" }] };
      return f;
    };
    await helper.load(modules, withEnv("mqtt://127.0.0.1:${KURA_TEST_PORT}"), creds());
    const got = next(helper.getNode("out"), "the result");
    helper.getNode("pr").receive({});
    assert.equal((await got).payload.dialect, "kura");
    await helper.unload();
    await helper.load(modules, withEnv("mqtt://127.0.0.1:${KURA_NOT_SET_PORT}"), creds());
    const caught = next(helper.getNode("caught"), "the failure");
    helper.getNode("pr").receive({});
    const error = (await caught).error as { code?: string; message?: string };
    assert.equal(error.code, "CONFIG");
    assert.match(String(error.message), /provision-request\.kura\.errors\.env-unset/);
  });

  it("a wrong activation key is refused by the service (403) and not retried", async () => {
    responder.activationKey = KEY;
    await helper.load(modules, flow(prNode({ retryMax: 3 })), creds({ kuraActivationKey: "not-the-key" }));
    const before = responder.requests.length;
    const caught = next(helper.getNode("caught"), "the failure");
    helper.getNode("pr").receive({});
    const m = await caught;
    assert.equal((m.error as { code?: string }).code, "DENIED");
    assert.equal(m.errorStatus, 403);
    assert.equal(responder.requests.length - before, 1, "asked once");
  });

  it("ca-authentication: a chain that does not end in the tls-config's CA is refused and nothing is stored", async () => {
    store = new MemoryBackend();
    responder.behaviour = "untrusted";
    const tlsNode = {
      id: "tls",
      type: "tls-config",
      z: "tab",
      cert: "",
      key: "",
      ca: "",
      verifyservercert: true,
    };
    await helper.load(
      modules,
      flow(prNode({ kuraCaAuthentication: true, tls: "tls", store: "st" }), [tlsNode]),
      { ...creds(), tls: { cadata: pki.caCert } },
    );
    const caught = next(helper.getNode("caught"), "the failure");
    helper.getNode("pr").receive({});
    const m = await caught;
    assert.equal((m.error as { code?: string }).code, "TLS");
    assert.match(String((m.error as { message?: string }).message), /ca-authentication refused the answer/);
    assert.equal(await store.get("kura/KURADEV01"), undefined, "nothing stored");
    // The same chain with the CA that signed it is taken.
    responder.behaviour = "answer";
    const out = next(helper.getNode("out"), "the result");
    helper.getNode("pr").receive({});
    assert.deepEqual((await out).payload.credentials.caCertificates, [pki.caCert]);
  });

  it("a timeout is retried after the retry interval, up to the maximum number of attempts", async () => {
    responder.behaviour = "silent";
    await helper.load(modules, flow(prNode({ timeout: 0.3, retryMax: 3 })), creds());
    const texts = statuses(helper.getNode("pr"));
    const before = responder.requests.length;
    const caught = next(helper.getNode("caught"), "the failure");
    helper.getNode("pr").receive({});
    const m = await caught;
    assert.equal((m.error as { code?: string }).code, "TIMEOUT");
    assert.equal(responder.requests.length - before, 3, "three attempts reached the service");
    assert.equal(
      texts.filter((s) => s.text === "provision-request.kura.status.retrying" && s.fill === "yellow").length,
      2,
    );
  });

  it("-1: a refused CONNECT is retried until the provision request appears", async () => {
    await helper.load(modules, flow(prNode({ kuraUsername: "late-device", retryMax: -1 })), creds());
    const pr = helper.getNode("pr");
    const retrying = statusWith(pr, "provision-request.kura.status.retrying");
    const out = next(helper.getNode("out"), "the result");
    pr.receive({});
    await retrying;
    // The request is created: its user is added and mosquitto reloads its password file.
    execFileSync("mosquitto_passwd", ["-b", passwd, "late-device", PASSWORD]);
    process.kill(broker.child.pid!, "SIGHUP");
    const m = await out;
    assert.equal(m.payload.credentials.username, "acme-device");
  });

  it("a redeploy reuses the stored result and does not provision again; msg.reprovision asks again", async () => {
    store = new MemoryBackend();
    const pr = prNode({ kuraEnabled: true, store: "st", kuraClientId: "KURADEV02" });
    const before = responder.requests.length;
    await helper.load(modules, flow(pr), creds());
    const first = await next(helper.getNode("out"), "the first result");
    assert.equal(first.payload.reused, false);
    assert.equal(responder.requests.length - before, 1);

    await helper.unload();
    await helper.load(modules, flow(pr), creds());
    const texts = statuses(helper.getNode("pr"));
    const again = await next(helper.getNode("out"), "the stored result");
    assert.equal(again.payload.reused, true);
    assert.deepEqual(again.payload.credentials, first.payload.credentials);
    assert.deepEqual(again.broker, first.broker, "the MQTT nodes reconnect after a restart too");
    assert.equal(responder.requests.length - before, 1, "no new attempt");
    assert.equal(texts.at(-1)?.text, "provision-request.kura.status.provisioned");

    const fresh = next(helper.getNode("out"), "the new result");
    helper.getNode("pr").receive({ reprovision: true });
    assert.equal((await fresh).payload.reused, false);
    assert.equal(responder.requests.length - before, 2, "asked again");
  });
});
