/**
 * Examples as Menu > Import > Examples gives them: the file as it is (no demo credentials,
 * no environment, no PKI made beforehand), into a clean user directory of a real
 * `node-red` on an ephemeral port; each reaches its success status, and no debug
 * message shows a secret. Only the ports are moved (to free ones), so that runs do not
 * collide.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { deploy, runtimes, startNodeRed, type RunningNodeRed } from "../support/node-red";
import { Comms } from "../support/node-red-comms";
import { readStore } from "../support/soak-demo";
import { asFlow, loadExamples, withEphemeralPorts } from "./examples";

/** Every variable the demo sets: blank, so nothing but the example itself can supply a value. */
const NO_DEMO_ENV: NodeJS.ProcessEnv = {
  PROVISION_DEVICE_KEY: "",
  PROVISION_DEVICE_SECRET: "",
  BOOTSTRAP_EXTERNAL_ID: "",
  BOOTSTRAP_EXTERNAL_KEY: "",
  BOOTSTRAP_THING_KEY: "",
  BOOTSTRAP_ENCRYPT_KEY: "",
  DPS_MANUFACTURER_CA: "",
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
    before(async () => {
      nr = await startNodeRed(rt, { env: NO_DEMO_ENV });
      comms = await Comms.connect(nr.url);
    });
    after(async () => {
      comms?.close();
      await nr?.stop();
    });

    it("thingsboard-local-round-trip: the gateway provisions itself with the tab's demo values", async () => {
      const ex = example("thingsboard-local-round-trip.json");
      const mark = nr.problems().length;
      await deploy(nr, asFlow(await withEphemeralPorts(ex, nr.port), "import-tb"));
      await comms.waitForStatus("tb-gateway", /^provisioned$/);
      await comms.waitForStatus("tb-server", /1/);
      assert.deepEqual(nr.problems().slice(mark), []);
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
      await deploy(nr, asFlow(await withEphemeralPorts(ex, nr.port), "import-mf"));
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
    });

    it("credential-store-operations: set, get and list in the example's own folder; no value in debug", async () => {
      const ex = example("credential-store-operations.json");
      await deploy(nr, asFlow(await withEphemeralPorts(ex, nr.port), "import-cs"));
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
