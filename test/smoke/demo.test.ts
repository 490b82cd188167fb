import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/node-red";
import { Comms } from "../support/node-red-comms";
import { libcoapClient } from "../support/coaptcp-peers";
import { pythonDevice } from "../support/mainflux-fixtures";
import { freeTcpPort } from "../support/ports";
import { run, startProcess, type Started } from "../support/process";
import { connectAsync } from "mqtt";
import { provisionKuraDevice } from "../../lib/dialects/kura/device";
import { deriveDeviceKey } from "../../lib/dialects/azure-dps/sas";
import type { SdkRun } from "../support/azure-sdk-device";

const KEY = "demo-provision-key";
const SECRET = "demo-provision-secret";
const BOOTSTRAP = {
  id: "demo-device-01",
  key: "demo-external-key",
  thingKey: "demo-thing-key",
  encrypt: "12345678910111213141516171819202",
};
/** The demo's defaults for "a device of yours" on the Everyware tab (README). */
const EVERYWARE = {
  clientId: "MYDEVICE01",
  username: "MYDEVICE01-SN0001",
  password: "my-device-password",
  activationKey: "demoActivationKey0123456789abcdef",
  accountPassword: "demo-account-password",
};

/** The demo's defaults for the Azure DPS tab (README). */
const AZURE = {
  idScope: "0ne00000A0A",
  groupKey: "SSr31G7Zupm0miZTq0mN4Z3XHKJWksRskLeqoYOpjnFd7OgmdU+6EVGFcq/K9Cp1TbU5+iCK70N8O2JzdP4j3w==",
  hub: "demo-hub.azure-devices.net",
};
const SDK_SCRIPT = join(__dirname, "..", "support", "azure-sdk-device.js");
let azurePort = 0;

/** `npm start` (scripts/start.js after the build) in a user directory of the test's own. */
async function startDemo(
  dir: string,
  port: number,
  mqttPort: number,
  dpsPort: number,
  accountPort: number,
): Promise<{ demo: Started; comms: Comms }> {
  azurePort ||= await freeTcpPort();
  const demo = await startProcess(
    process.execPath,
    [join(PROJECT_ROOT, "scripts", "start.js")],
    /(?=[\s\S]*Server now running)(?=[\s\S]*Started flows)/,
    {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        PROVISION_MQTT_PORT: String(mqttPort),
        DPS_PORT: String(dpsPort),
        EVERYWARE_ACCOUNT_PORT: String(accountPort),
        AZURE_DPS_MQTT_PORT: String(azurePort),
        NODE_RED_DEMO_DIR: dir,
      },
      timeoutMs: 60000,
    },
  );
  return { demo, comms: await Comms.connect(`http://127.0.0.1:${port}`) };
}

/** A ThingsBoard device written by someone else: Python paho, as the Edge Gateway's script. */
async function pahoDevice(mqttPort: number, name: string): Promise<Record<string, unknown>> {
  const { code, stdout, stderr } = await run(
    "/usr/bin/python3",
    [join(PROJECT_ROOT, "test", "support", "tbserve-paho-device.py"), "127.0.0.1", String(mqttPort), name],
    {
      env: {
        ...process.env,
        THINGSBOARD_PROVISION_DEVICE_KEY: KEY,
        THINGSBOARD_PROVISION_DEVICE_SECRET: SECRET,
      },
    },
  );
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout.toString().replace(/^REPLY /, "")) as Record<string, unknown>;
}

describe("npm start: the demo serves ThingsBoard provisioning and a gateway provisions itself", () => {
  let dir: string;
  let port: number;
  let mqttPort: number;
  let dpsPort: number;
  let accountPort: number;
  let url: string;
  let first: { demo: Started; comms: Comms };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "demo-"));
    port = await freeTcpPort();
    mqttPort = await freeTcpPort();
    dpsPort = await freeTcpPort();
    accountPort = await freeTcpPort();
    url = `http://127.0.0.1:${port}`;
    first = await startDemo(dir, port, mqttPort, dpsPort, accountPort);
  });
  after(async () => {
    first?.comms.close();
    await first?.demo.stop();
  });

  it("serves the editor on 127.0.0.1 and deploys the demo flow without error", async () => {
    assert.equal((await fetch(url)).status, 200);
    const flows = JSON.parse(readFileSync(join(dir, "flows.json"), "utf8")) as Array<{ type: string }>;
    assert.ok(flows.some((n) => n.type === "provision-response"));
    assert.ok(flows.some((n) => n.type === "provision-request"));
    assert.doesNotMatch(first.demo.output(), /\[error\]|Missing node types|Waiting for missing types/);
  });

  it("the start banner names every endpoint the demo serves, on the ports it really uses", async () => {
    const banner = first.demo.output();
    assert.match(banner, new RegExp(`ThingsBoard over MQTT +mqtt://127\\.0\\.0\\.1:${mqttPort}\\n`));
    assert.match(banner, new RegExp(`ThingsBoard over HTTP +POST ${url}/api/v1/provision\\n`));
    assert.match(banner, new RegExp(`Mainflux bootstrap +GET ${url}/things/bootstrap/\\{external id\\}\\n`));
    assert.match(banner, new RegExp(`plgd DPS +coaps\\+tcp://127\\.0\\.0\\.1:${dpsPort}\\n`));
    assert.match(
      banner,
      new RegExp(`Everyware / Kura +mqtt://127\\.0\\.0\\.1:${mqttPort} \\(provision broker\\)\\n`),
    );
    assert.match(
      banner,
      new RegExp(`Everyware / Kura +mqtt://127\\.0\\.0\\.1:${accountPort} \\(demo account broker\\)\\n`),
    );
    assert.match(
      banner,
      new RegExp(
        `Azure IoT Hub DPS +mqtts://127\\.0\\.0\\.1:${azurePort} \\(CA: azure-dps-demo-pki/ca\\.pem\\)\\n`,
      ),
    );
  });

  it("Azure DPS: the demo device registers at deploy with a key derived from the group key", async () => {
    await first.comms.waitForStatus("azure-device", /^assigned$/);
    await first.comms.waitForStatus("azure-server", /1 provisioned/);
  });

  it("Azure DPS: Microsoft's device SDK registers with the demo CA from the user directory and a derived key", async () => {
    const registrationId = "sdk-device-01";
    const arg: SdkRun = {
      transport: "mqtt",
      host: `127.0.0.1:${azurePort}`,
      idScope: AZURE.idScope,
      registrationId,
      key: deriveDeviceKey(AZURE.groupKey, registrationId),
    };
    const done = await run(process.execPath, [SDK_SCRIPT, JSON.stringify(arg)], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, "azure-dps-demo-pki", "ca.pem"), DEBUG: "" },
    });
    const line = done.stdout.toString("utf8").trim().split("\n").pop() ?? "";
    const out = JSON.parse(line || "{}") as {
      ok?: boolean;
      result?: { assignedHub?: string; deviceId?: string };
    };
    assert.equal(out.ok, true, line + done.stderr.toString().slice(0, 1000));
    assert.equal(out.result?.assignedHub, AZURE.hub);
    assert.equal(out.result?.deviceId, registrationId);
    await first.comms.waitForStatus("azure-server", /2 provisioned/);
  });

  it("Everyware / Kura: the demo device provisions on the broker ThingsBoard's devices use, and reconnects to the account broker", async () => {
    await first.comms.waitForStatus("kura-device", /^provisioned/);
    await first.comms.waitForStatus("kura-account-in", /status\.connected$/);
    const heard = await first.comms.waitFor(
      "the hello the device said on the account broker",
      (m) => m.topic === "debug" && (m.data as { id?: string })?.id === "kura-heard",
    );
    assert.equal((heard.data as { msg?: unknown }).msg, "hello from the provisioned device");
    await first.comms.waitForStatus("kura-server", /1 provisioned/);
  });

  it("Everyware / Kura: a device of yours provisions with the EVERYWARE_* request, then reaches the account broker", async () => {
    const result = await provisionKuraDevice(
      {
        brokerUrl: `mqtt://127.0.0.1:${mqttPort}`,
        accountName: "demo-provision",
        clientId: EVERYWARE.clientId,
        username: EVERYWARE.username,
        password: EVERYWARE.password,
        activationKey: EVERYWARE.activationKey,
      },
      { timeoutMs: 10000 },
    );
    assert.deepEqual(result.configuration.servers, [{ uri: `mqtt://127.0.0.1:${accountPort}` }]);
    assert.equal(result.credentials.password, EVERYWARE.accountPassword);
    const account = await connectAsync(`mqtt://127.0.0.1:${accountPort}`, {
      clientId: result.credentials.clientId,
      username: result.credentials.username,
      password: result.credentials.password,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await account.endAsync();
    // The request is consumed: asking again with it is refused at CONNECT.
    await assert.rejects(
      provisionKuraDevice(
        {
          brokerUrl: `mqtt://127.0.0.1:${mqttPort}`,
          accountName: "demo-provision",
          clientId: EVERYWARE.clientId,
          username: EVERYWARE.username,
          password: EVERYWARE.password,
          activationKey: EVERYWARE.activationKey,
        },
        { timeoutMs: 10000 },
      ),
      (e: Error & { code?: string }) => e.code === "DENIED",
    );
  });

  it("the simulated gateway provisions itself over the embedded broker at deploy", async () => {
    await first.comms.waitForStatus("tb-gateway", /^provisioned$/);
    await first.comms.waitForStatus("tb-server", /1/);
  });

  it("a device written by someone else (Python paho, as the Edge Gateway's script) provisions unchanged", async () => {
    const reply = await pahoDevice(mqttPort, "paho-device-1");
    assert.equal(reply.status, "SUCCESS");
    assert.equal(reply.credentialsType, "ACCESS_TOKEN");
    assert.match(String(reply.credentialsValue), /^[A-Za-z0-9]{20}$/);
  });

  it("HTTP on Node-RED's own port answers as ThingsBoard does, refusals included", async () => {
    const ask = async (body: unknown) => {
      const res = await fetch(`${url}/api/v1/provision`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 200);
      return (await res.json()) as Record<string, unknown>;
    };
    const ok = await ask({
      deviceName: "http-device-1",
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
    });
    assert.equal(ok.status, "SUCCESS");
    assert.deepEqual(
      await ask({ deviceName: "http-device-2", provisionDeviceKey: KEY, provisionDeviceSecret: "nope" }),
      {
        status: "NOT_FOUND",
        errorMsg: "Provision data was not found!",
      },
    );
    assert.deepEqual(
      await ask({ deviceName: "http-device-1", provisionDeviceKey: KEY, provisionDeviceSecret: SECRET }),
      {
        status: "FAILURE",
        errorMsg: "Failed to provision device!",
      },
    );
  });

  it("a Mainflux device written by someone else (Python) bootstraps in secure mode on Node-RED's port", async () => {
    const ok = await pythonDevice(url, BOOTSTRAP.id, BOOTSTRAP.key, BOOTSTRAP.encrypt);
    assert.equal(ok.status, 200, ok.body);
    const answer = JSON.parse(ok.body) as {
      thing_id: string;
      thing_key: string;
      channels: Array<{ id: string }>;
    };
    assert.equal(answer.thing_id, "demo-thing-1");
    assert.equal(answer.thing_key, BOOTSTRAP.thingKey);
    assert.deepEqual(
      answer.channels.map((c) => c.id),
      ["demo-channel-1"],
    );
    assert.equal((await pythonDevice(url, BOOTSTRAP.id, "not-the-key", BOOTSTRAP.encrypt)).status, 403);
    assert.equal((await pythonDevice(url, "nobody", BOOTSTRAP.key, BOOTSTRAP.encrypt)).status, 404);
  });

  it("the example device bootstraps in secure mode at deploy and publishes with the thing key it got", async () => {
    await first.comms.waitForStatus("mf-ex-device", /^bootstrapped$/);
    const accepted = first.comms.waitFor(
      "the adapter's 202 in the debug sidebar",
      (m) =>
        m.topic === "debug" &&
        (m.data as { id?: string }).id === "mf-ex-published" &&
        String((m.data as { msg?: unknown }).msg) === "202",
    );
    assert.equal((await fetch(`${url}/inject/mf-ex-again`, { method: "POST" })).status, 200);
    await accepted;
  });

  it("the plgd DPS client of the demo provisions over coaps+tcp with the demo PKI at deploy", async () => {
    await first.comms.waitForStatus("dps-ex-client", /^provisioned · demo PKI$/);
  });

  it("a CoAP device outside Node-RED (libcoap) reaches the demo DPS with the demo manufacturer certificate", async () => {
    const pki = join(dir, "plgd-dps-demo-pki");
    const r = await libcoapClient([
      "-m",
      "get",
      "-c",
      join(pki, "device-manufacturer.pem"),
      "-j",
      join(pki, "device-manufacturer.key"),
      "-C",
      join(pki, "dps-ca.pem"),
      `coaps+tcp://127.0.0.1:${dpsPort}/x.plgd.dev/time`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    // The answer is CBOR {"time": RFC 3339, ...}; its date is readable in the raw bytes.
    const when = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.exec(r.stdout.toString("latin1"));
    assert.ok(when, `the DPS answered with its time: ${r.stdout.toString("hex")} ${r.stderr}`);
    assert.ok(Math.abs(Date.parse(when[0] + "Z") - Date.now()) < 24 * 3600 * 1000);
  });

  it("after a restart on other ports the flows follow them, and the gateway reuses its stored token", async () => {
    first.comms.close();
    await first.demo.stop();
    // The flows are kept from the first start; the MQTT port changes in the environment.
    const movedMqtt = await freeTcpPort();
    const second = await startDemo(dir, port, movedMqtt, dpsPort, accountPort);
    try {
      await second.comms.waitForStatus("tb-gateway", /^reused$/);
      await second.comms.waitForStatus("mf-ex-device", /^reused stored configuration$/);
      // The Kura device keeps what it got: it reconnects to the account broker without
      // provisioning again (its request was consumed: asking again would be refused).
      await second.comms.waitForStatus("kura-device", /^provisioned/);
      await second.comms.waitForStatus("kura-account-in", /status\.connected$/);
      await second.comms.waitForStatus("kura-server", /0 provisioned/);
      // The Azure device keeps its assignment: no registration at the service this time.
      await second.comms.waitForStatus("azure-device", /^assigned \(stored\)$/);
      assert.doesNotMatch(second.demo.output(), /\[error\]/);
      assert.match(
        second.demo.output(),
        new RegExp(`ThingsBoard over MQTT +mqtt://127\\.0\\.0\\.1:${movedMqtt}\\n`),
      );
      // The broker really listens there: a device provisions on the new port.
      assert.equal((await pahoDevice(movedMqtt, "moved-port-device")).status, "SUCCESS");
    } finally {
      second.comms.close();
      await second.demo.stop();
    }
  });

  it("the credential secret is private to the user directory and no secret is logged", () => {
    assert.equal(statSync(join(dir, ".credential-secret")).mode & 0o777, 0o600);
    const secret = readFileSync(join(dir, ".credential-secret"), "utf8").trim();
    assert.doesNotMatch(first.demo.output(), new RegExp(secret));
    for (const value of [
      SECRET,
      BOOTSTRAP.key,
      BOOTSTRAP.thingKey,
      BOOTSTRAP.encrypt,
      EVERYWARE.password,
      EVERYWARE.activationKey,
      EVERYWARE.accountPassword,
      AZURE.groupKey,
    ])
      assert.doesNotMatch(first.demo.output(), new RegExp(value));
  });
});
