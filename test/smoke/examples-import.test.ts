/**
 * Examples as Menu > Import > Examples gives them: the file as it is (no demo credentials,
 * no environment, no PKI made beforehand), into a clean user directory of a real
 * `node-red` whose port is not 1880; each reaches its success status, and no debug
 * message shows a secret. 1880, 1883 and 15684 are taken by something else (squatters
 * stand in for them: a test never binds those ports), so the only edit is the one a user
 * on such a machine makes: each port's one place, the tab environment, gets a free port.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { deploy, runtimes, startNodeRed, type RunningNodeRed } from "../support/node-red";
import { Comms } from "../support/node-red-comms";
import { readStore } from "../support/soak-demo";
import { freeTcpPort } from "../support/ports";
import { asFlow, loadExamples, startSquatter, WELL_KNOWN_PORTS, withTakenPorts } from "./examples";

/** Every variable the demo sets: blank, so nothing but the example itself can supply a value. */
const NO_DEMO_ENV: NodeJS.ProcessEnv = {
  PROVISION_DEVICE_KEY: "",
  PROVISION_DEVICE_SECRET: "",
  BOOTSTRAP_EXTERNAL_ID: "",
  BOOTSTRAP_EXTERNAL_KEY: "",
  BOOTSTRAP_THING_KEY: "",
  BOOTSTRAP_ENCRYPT_KEY: "",
  PROVISION_MQTT_PORT: "",
  DPS_PORT: "",
  EVERYWARE_ACCOUNT_PORT: "",
  EVERYWARE_DEMO_PASSWORD: "",
  EVERYWARE_ACCOUNT_PASSWORD: "",
  EVERYWARE_CLIENT_ID: "",
  EVERYWARE_USERNAME: "",
  EVERYWARE_PASSWORD: "",
  EVERYWARE_ACTIVATION_KEY: "",
  AZURE_DPS_MQTT_PORT: "",
  AZURE_DPS_ID_SCOPE: "",
  AZURE_DPS_GROUP_KEY: "",
  AZURE_DPS_IOT_HUB: "",
  THINGSBOARD_PROVISION_DEVICE_KEY: "",
  THINGSBOARD_PROVISION_DEVICE_SECRET: "",
};

function example(file: string) {
  const ex = loadExamples().find((e) => e.file === file);
  assert.ok(ex, `no example ${file}`);
  return ex;
}

/** The strings inside every `credentials` object of a stored record (its type aside): what must never reach debug. */
function secretsIn(v: unknown, inside = false, into: string[] = []): string[] {
  if (typeof v === "string" && inside && v.length >= 8) into.push(v);
  else if (v && typeof v === "object")
    for (const [k, x] of Object.entries(v))
      if (!(inside && k === "type")) secretsIn(x, inside || k === "credentials", into);
  return into;
}

const debugText = (comms: Comms) => JSON.stringify(comms.all().filter((m) => m.topic === "debug"));

for (const rt of runtimes()) {
  describe(`${rt.label}: examples imported as they are run in a clean Node-RED`, () => {
    let nr: RunningNodeRed;
    let comms: Comms;
    const squatters: Array<Awaited<ReturnType<typeof startSquatter>>> = [];
    const taken = new Map<number, number>();
    before(async () => {
      nr = await startNodeRed(rt, { env: NO_DEMO_ENV });
      assert.notEqual(nr.port, 1880);
      comms = await Comms.connect(nr.url);
      for (const p of WELL_KNOWN_PORTS) {
        const sq = await startSquatter();
        squatters.push(sq);
        taken.set(p, sq.port);
      }
    });
    after(async () => {
      comms?.close();
      await nr?.stop();
      for (const sq of squatters) await sq.stop();
    });
    /** No node reached a port that belongs to someone else. */
    const noneSquatted = () =>
      assert.deepEqual(
        squatters.map((sq) => sq.connections()),
        squatters.map(() => 0),
        "a node used a fixed port",
      );

    it("thingsboard-local-round-trip: the gateway provisions itself with the tab's demo values", async () => {
      const ex = example("thingsboard-local-round-trip.json");
      const mark = nr.problems().length;
      await deploy(nr, withTakenPorts(ex, { PROVISION_MQTT_PORT: await freeTcpPort() }, taken));
      await comms.waitForStatus("tb-gateway", /^provisioned$/);
      await comms.waitForStatus("tb-server", /1/);
      // The children ask "this Node-RED" over HTTP, on whatever port it serves.
      assert.equal((await fetch(`${nr.url}/inject/tb-children`, { method: "POST" })).status, 200);
      await comms.waitForStatus("tb-child", /^provisioned$/);
      await comms.waitForStatus("tb-server", /4 provisioned/);
      assert.deepEqual(nr.problems().slice(mark), []);
      noneSquatted();
      const said = debugText(comms);
      assert.equal(said.includes("demo-provision-secret"), false, "the provision secret reached debug");
      const issued = readStore(nr.userDir).flatMap((e) =>
        secretsIn((e.record as { value?: unknown })?.value),
      );
      for (const s of issued) assert.equal(said.includes(s), false, "an issued credential reached debug");
    });

    it("mainflux-bootstrap-secure: the device bootstraps in secure mode with the tab's demo values", async () => {
      const ex = example("mainflux-bootstrap-secure.json");
      const mark = nr.problems().length;
      await deploy(nr, withTakenPorts(ex, {}, taken));
      await comms.waitForStatus("mf-ex-device", /^bootstrapped$/);
      // It used what it got: the stand-in adapter accepted its thing key.
      const published = await comms.waitFor(
        "the adapter's answer",
        (m) => m.topic === "debug" && (m.data as { id?: string })?.id === "mf-ex-published",
      );
      assert.match(String((published.data as { msg?: unknown }).msg), /^202$/);
      assert.deepEqual(nr.problems().slice(mark), []);
      const said = debugText(comms);
      for (const s of ["demo-external-key", "demo-thing-key", "12345678910111213141516171819202"])
        assert.equal(said.includes(s), false, "a bootstrap key reached debug");
      noneSquatted();
    });

    it("plgd-dps-local: the client provisions with the demo PKI its nodes make, said in the log once", async () => {
      const ex = example("plgd-dps-local.json");
      const mark = nr.problems().length;
      const logged = nr.output().length;
      await deploy(nr, withTakenPorts(ex, { DPS_PORT: await freeTcpPort() }, taken));
      await comms.waitForStatus("dps-ex-client", /^provisioned · demo PKI$/);
      await comms.waitForStatus("dps-ex-service", /demo PKI · 1 provisioned/);
      assert.deepEqual(nr.problems().slice(mark), []);
      const warnings =
        nr
          .output()
          .slice(logged)
          .match(/demo PKI in \S+, FOR TRYING OUT ONLY/g) ?? [];
      assert.equal(warnings.length, 1, "the demo PKI is named in the log once");
      assert.ok(existsSync(join(nr.userDir, "plgd-dps-demo-pki", "dps-server.pem")), "in the user directory");
      const said = debugText(comms);
      assert.equal(said.includes("PRIVATE KEY"), false, "a private key reached debug");
      noneSquatted();
    });

    it("everyware-kura-local: the device provisions, and Node-RED's core mqtt in reconnects with what it got", async () => {
      const ex = example("everyware-kura-local.json");
      const mark = nr.problems().length;
      await deploy(
        nr,
        withTakenPorts(
          ex,
          { PROVISION_MQTT_PORT: await freeTcpPort(), EVERYWARE_ACCOUNT_PORT: await freeTcpPort() },
          taken,
        ),
      );
      await comms.waitForStatus("kura-device", /^provisioned/);
      await comms.waitForStatus("kura-account-in", /status\.connected$/);
      const heard = await comms.waitFor(
        "the hello from the account broker",
        (m) => m.topic === "debug" && (m.data as { id?: string })?.id === "kura-heard",
      );
      assert.equal((heard.data as { msg?: unknown }).msg, "hello from the provisioned device");
      await comms.waitForStatus("kura-server", /1 provisioned/);
      assert.deepEqual(nr.problems().slice(mark), []);
      noneSquatted();
      const said = debugText(comms);
      for (const s of [
        "demo-kura-password",
        "demo-account-password",
        "my-device-password",
        "demoActivationKey",
      ])
        assert.equal(said.includes(s), false, "a Kura secret reached debug");
    });

    it("azure-dps-local: the device registers with the demo certificate it made itself, and keeps its hub", async () => {
      const ex = example("azure-dps-local.json");
      const mark = nr.problems().length;
      await deploy(nr, withTakenPorts(ex, { AZURE_DPS_MQTT_PORT: await freeTcpPort() }, taken));
      await comms.waitForStatus("azure-device", /^assigned$/);
      await comms.waitForStatus("azure-server", /1 provisioned/);
      // A second device by message, with the same node and the group key it derives from.
      const seen = comms.waitFor(
        "the second device's result",
        (m) =>
          m.topic === "debug" &&
          (m.data as { id?: string })?.id === "azure-out" &&
          String((m.data as { msg?: unknown }).msg).includes("demo-device-02"),
      );
      assert.equal((await fetch(`${nr.url}/inject/azure-another`, { method: "POST" })).status, 200);
      const said = String(((await seen).data as { msg?: unknown }).msg);
      assert.match(said, /demo-hub\.azure-devices\.net/);
      await comms.waitForStatus("azure-server", /2 provisioned/);
      assert.deepEqual(nr.problems().slice(mark), []);
      noneSquatted();
      const all = debugText(comms);
      assert.equal(all.includes("SSr31G7Zupm0miZTq0mN4Z3XHKJWksRsk"), false, "the group key reached debug");
      assert.equal(all.includes("SharedAccessKey="), false, "a device key reached debug");
    });

    it("credential-store-operations: set, get and list in the example's own folder; no value in debug", async () => {
      const ex = example("credential-store-operations.json");
      await deploy(nr, asFlow(withTakenPorts(ex, {}, taken), "import-cs"));
      const debugOf = (id: string) =>
        comms.waitFor(`debug of ${id}`, (m) => m.topic === "debug" && (m.data as { id?: string })?.id === id);
      const press = async (inject: string, debug: string) => {
        const seen = debugOf(debug);
        assert.equal((await fetch(`${nr.url}/inject/${inject}`, { method: "POST" })).status, 200);
        return seen;
      };
      await press("cs-inject-set", "cs-debug-set");
      await press("cs-inject-get", "cs-debug-get");
      const listed = await press("cs-inject-list", "cs-debug-list");
      // The example's store sees its own entry only, whatever else the user directory holds.
      const entries = JSON.parse(String((listed.data as { msg: string }).msg)) as { payload: unknown[] };
      assert.equal(entries.payload.length, 1);
      assert.equal(debugText(comms).includes("EXAMPLE-TOKEN-123"), false, "the stored token reached debug");
    });
  });
}
