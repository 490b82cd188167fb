import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { deploy, PROJECT_ROOT, runtimes, startNodeRed, type RunningNodeRed } from "../support/node-red";
import {
  asFlow,
  demoSetup,
  loadExamples,
  prepareDemoFiles,
  withCredentials,
  withEphemeralPorts,
} from "./examples";

const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as {
  name: string;
  "node-red": { nodes: Record<string, string> };
};
const declaredSets = Object.keys(pkg["node-red"].nodes);

interface NodeSet {
  id: string;
  name: string;
  types: string[];
  enabled: boolean;
  err?: string;
  module: string;
}

for (const rt of runtimes()) {
  describe(`${rt.label}: the package loads and its examples deploy cleanly`, () => {
    let nr: RunningNodeRed;
    before(async () => {
      nr = await startNodeRed(rt, { env: demoSetup().env });
      prepareDemoFiles(nr.userDir);
    });
    after(async () => {
      await nr?.stop();
    });

    it("every node set of package.json is loaded without error", async () => {
      const res = await fetch(`${nr.url}/nodes`, { headers: { accept: "application/json" } });
      assert.equal(res.status, 200);
      const sets = ((await res.json()) as NodeSet[]).filter((s) => s.module === pkg.name);
      assert.deepEqual(sets.map((s) => s.name).sort(), [...declaredSets].sort());
      for (const s of sets) {
        assert.equal(s.err, undefined, `${s.name}: ${s.err}`);
        assert.equal(s.enabled, true, `${s.name} is not enabled`);
        assert.ok(s.types.length > 0, `${s.name} registers no type`);
      }
      assert.deepEqual(nr.problems(), []);
    });

    it("the editor gets every type's template, help and icon", async () => {
      const html = await (await fetch(`${nr.url}/nodes`, { headers: { accept: "text/html" } })).text();
      const res = await fetch(`${nr.url}/nodes`, { headers: { accept: "application/json" } });
      const sets = ((await res.json()) as NodeSet[]).filter((s) => s.module === pkg.name);
      for (const type of sets.flatMap((s) => s.types)) {
        assert.ok(html.includes(`data-template-name="${type}"`), `${type}: no edit template`);
        assert.ok(html.includes(`data-help-name="${type}"`), `${type}: no help`);
        assert.match(
          html,
          new RegExp(`registerType\\(\\s*["']${type}["']`),
          `${type}: not registered in the editor`,
        );
      }
      for (const icon of html.matchAll(/icon:\s*"([\w.-]+\.svg)"/g)) {
        const r = await fetch(`${nr.url}/icons/${pkg.name}/${icon[1]}`);
        assert.equal(r.status, 200, `icon ${icon[1]} is not served`);
      }
    });

    it("HTTP endpoints follow redeploys: the new configuration answers, a removed node's routes are gone", async () => {
      const tab = { id: "http-tab", type: "tab", label: "http" };
      const service = (thingId: string) => ({
        id: "http-bs",
        type: "bootstrap-service",
        z: "http-tab",
        x: 100,
        y: 100,
        store: "",
        allowPlain: true,
        initEnabled: true,
        initExternalId: "smoke-device",
        initThingId: thingId,
        initChannels: "c1",
        wires: [[], []],
        credentials: { initExternalKey: "smoke-key", initThingKey: "smoke-thing-key" },
      });
      const profile = {
        id: "http-profile",
        type: "provisioning-profile",
        name: "smoke",
        strategy: "allow-create",
        credentialsType: "ACCESS_TOKEN",
        credentials: { key: "smoke-provision-key", secret: "smoke-provision-secret" },
      };
      const tb = {
        id: "http-tb",
        type: "provision-response",
        z: "http-tab",
        x: 100,
        y: 200,
        profile: "http-profile",
        mqtt: "off",
        http: true,
        httpPath: "/api/v1/provision",
        coap: false,
        wires: [[], []],
      };
      const bootstrap = async () => {
        const r = await fetch(`${nr.url}/things/bootstrap/smoke-device`, {
          headers: { authorization: "Thing smoke-key" },
        });
        return {
          status: r.status,
          body: r.status === 200 ? ((await r.json()) as { thing_id: string }) : undefined,
        };
      };
      const provision = () =>
        fetch(`${nr.url}/api/v1/provision`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            deviceName: `smoke-${Date.now()}`,
            provisionDeviceKey: "smoke-provision-key",
            provisionDeviceSecret: "smoke-provision-secret",
          }),
        });
      const mark = nr.problems().length;
      await deploy(nr, [tab, profile, service("thing-A"), tb]);
      assert.equal((await bootstrap()).body?.thing_id, "thing-A");
      const first = await provision();
      assert.equal(((await first.json()) as { status: string }).status, "SUCCESS");
      await deploy(nr, [tab, profile, service("thing-B"), tb]);
      assert.equal((await bootstrap()).body?.thing_id, "thing-B", "the old service still answered");
      assert.equal(((await (await provision()).json()) as { status: string }).status, "SUCCESS");
      await deploy(nr, [tab]);
      assert.equal((await bootstrap()).status, 404);
      assert.equal((await provision()).status, 404);
      assert.deepEqual(nr.problems().slice(mark), []);
    });

    for (const ex of loadExamples()) {
      it(`example ${ex.file} deploys with no error and no missing type`, async () => {
        const flows = withCredentials(asFlow(await withEphemeralPorts(ex, nr.port), `smoke-${ex.file}`));
        const mark = nr.problems().length;
        await deploy(nr, flows);
        assert.deepEqual(nr.problems().slice(mark), [], `problems while deploying ${ex.file}`);
      });
    }
  });
}
